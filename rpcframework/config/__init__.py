"""rpcframework.config"""
