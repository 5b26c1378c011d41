"""PEP 517 backend: setuptools, plus mypy (for mypyc) in the build requirements of a compiled build.

``ASGISERVE_COMPILE=1 pip wheel .`` builds the wheel in an isolated environment; mypyc must be
in it. A plain build (the default, and every ``pip install -e .``) does not download mypy.
See setup.py and docs/mypyc.md.
"""
from __future__ import annotations

import os

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (the hooks this module does not change)

# Pinned: the mypy the compiled build was measured and tested with (mypyc's output changes
# between releases; black pins it the same way).
MYPYC = "mypy==2.4.1"


def _compiling() -> bool:
    return os.environ.get("ASGISERVE_COMPILE", "") not in ("", "0")


def _requires(hook, config_settings):  # type: ignore[no-untyped-def]
    if not _compiling():
        return list(hook(config_settings))
    # setuptools runs setup.py to find its own requirements; mypyc is not installed yet then.
    flag = os.environ.pop("ASGISERVE_COMPILE")
    try:
        return list(hook(config_settings)) + [MYPYC]
    finally:
        os.environ["ASGISERVE_COMPILE"] = flag


def get_requires_for_build_wheel(config_settings=None):  # type: ignore[no-untyped-def]
    return _requires(_setuptools.get_requires_for_build_wheel, config_settings)


def get_requires_for_build_editable(config_settings=None):  # type: ignore[no-untyped-def]
    return _requires(_setuptools.get_requires_for_build_editable, config_settings)
