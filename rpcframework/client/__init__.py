"""rpcframework.client"""
