"""Exceptions of the ASGI side that subclass builtins other than Exception.

They live outside ``asgi/http.py`` because that module may be compiled with mypyc, which
cannot yet define such subclasses (docs/mypyc.md); ``asgi.http`` re-exports them.
"""
from __future__ import annotations


class ClientDisconnected(OSError):
    """send() was called after the client went away (ASGI spec 2.4)."""


ClientDisconnected.__module__ = "asgiserve.asgi.http"  # where it has always been found
