"""rpcframework.server"""
