"""rpcframework.codec"""
