"""Adapters: the only modules that import Google clients."""
