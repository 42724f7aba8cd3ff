"""rpcframework.protocol"""
