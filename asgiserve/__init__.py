"""asgiserve: an HTTP/1.1 server for ASGI and WSGI apps."""
__version__ = "0.1.0"
