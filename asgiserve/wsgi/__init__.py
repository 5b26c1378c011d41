"""Run WSGI (PEP 3333) apps as ASGI 3 apps: ``WSGIMiddleware(app, threads=32, send_timeout=60.0)``."""
from .bridge import ClientStalled, WSGIMiddleware
from .filewrapper import FileWrapper
from .streams import ClientDisconnected

__all__ = ["WSGIMiddleware", "ClientDisconnected", "ClientStalled", "FileWrapper"]
