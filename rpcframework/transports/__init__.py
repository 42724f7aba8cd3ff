"""rpcframework.transports"""
