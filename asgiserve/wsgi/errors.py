"""Exceptions of the WSGI bridge that subclass builtins other than Exception.

They live here because streams.py and bridge.py may be compiled with mypyc, which cannot yet
define such subclasses (docs/mypyc.md); those modules re-export them.
"""
from __future__ import annotations


class ClientDisconnected(OSError):
    """The client went away (or stalled past the timeout) while the app was talking to it."""


class ClientStalled(ClientDisconnected, TimeoutError):
    """The client stopped reading the response (or sending the body) for longer than allowed."""


ClientDisconnected.__module__ = "asgiserve.wsgi.streams"  # where it has always been found
ClientStalled.__module__ = "asgiserve.wsgi.bridge"
