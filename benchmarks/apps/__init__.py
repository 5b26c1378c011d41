"""Benchmark applications. Each module is tiny on purpose: the servers are what is measured."""
