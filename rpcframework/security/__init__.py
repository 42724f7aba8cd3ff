"""rpcframework.security"""
