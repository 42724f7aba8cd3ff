"""rpcframework.cli"""
