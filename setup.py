"""Optional mypyc build of the per-request modules (docs/mypyc.md).

Plain ``pip install .`` / ``pip install -e .`` builds nothing: asgiserve stays pure Python.
With ``ASGISERVE_COMPILE=1`` in the environment, the modules in ``COMPILED`` are compiled with
mypyc into C extensions that sit beside their ``.py`` sources (which stay the fallback):

    ASGISERVE_COMPILE=1 pip wheel --no-deps -w dist .   # a compiled wheel (mypy joins the build requirements)
    ./dev compile                                       # a compiled copy of this checkout, in build/compiled

All the metadata is in pyproject.toml; this file only adds the extension modules.
"""
from __future__ import annotations

import os

from setuptools import setup

# The per-request path of HTTP/1.1 (protocol -> parser adapter -> events -> cycle -> response).
COMPILED = [
    "asgiserve/http/events.py",
    "asgiserve/http/limits.py",
    "asgiserve/http/framing.py",
    "asgiserve/http/response.py",
    "asgiserve/http/parse_httptools.py",
    "asgiserve/http/parse_h11.py",
    "asgiserve/http/protocol.py",
    "asgiserve/asgi/http.py",
    "asgiserve/state.py",
    # The WSGI bridge: environ, the exchange between loop and thread (not pool.py: its pools are
    # weakly referenced, which native classes do not support).
    "asgiserve/wsgi/environ.py",
    "asgiserve/wsgi/response.py",
    "asgiserve/wsgi/streams.py",
    "asgiserve/wsgi/appside.py",
    "asgiserve/wsgi/bridge.py",
]


def ext_modules() -> list:  # type: ignore[type-arg]
    if os.environ.get("ASGISERVE_COMPILE", "") in ("", "0"):
        return []
    from mypyc.build import mypycify

    opt = os.environ.get("ASGISERVE_COMPILE_OPT", "3")
    # group_name: the shared library is asgiserve__mypyc.*.so (not a hash) at the top of site-packages.
    return mypycify(COMPILED, opt_level=opt, debug_level="0", group_name="asgiserve")


setup(ext_modules=ext_modules())
