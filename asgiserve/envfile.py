"""--env-file: a dotenv file loaded into ``os.environ`` just before the app is imported.

Parsing is python-dotenv's (quotes, ``export``, comments, ``${VAR}`` interpolation, multi-line
values), an optional dependency: ``pip install 'asgiserve[dotenv]'`` (``[reload]`` has it too).

Where it is loaded decides what a reload sees. ``load_app`` calls ``load_env_file`` first, so:
one process loads it once; under the supervisor every worker loads it as it imports the app,
on top of the supervisor's own environment, which never holds the file's values. A new
generation of workers (--reload, HUP) therefore sees the file as it is now, a line removed
from the file is gone too. With --preload the supervisor imports the app, so it loads the file
once, and HUP keeps it (as it keeps the code).

Variables already set in the environment win over the file (python-dotenv's default, and
uvicorn's): the file holds development defaults, the real environment overrides them.
"""
from __future__ import annotations

import logging
import os

from .errors import AppLoadError, ConfigError

logger = logging.getLogger("asgiserve.error")

MISSING_DOTENV = "--env-file needs python-dotenv: pip install 'asgiserve[dotenv]'"


def check_env_file(path: str) -> None:
    """Preflight: python-dotenv is importable and the file is readable (ConfigError, exit 2)."""
    try:
        import dotenv  # noqa: F401
    except ImportError:
        raise ConfigError(MISSING_DOTENV) from None
    if not os.path.isfile(path):
        what = "is not a file" if os.path.exists(path) else "no such file"
        raise ConfigError(f"--env-file {path}: {what}")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"--env-file {path}: not readable")


def load_env_file(path: str) -> None:
    """Set the file's variables that the environment does not already have.

    ``${VAR}`` in a value takes VAR from the environment first, then from the file's lines
    above it (python-dotenv's rule when the environment wins).
    """
    try:
        from dotenv import load_dotenv
    except ImportError:
        raise AppLoadError(MISSING_DOTENV) from None
    if not os.path.isfile(path):  # deleted since startup: the workers must not run without it
        raise AppLoadError(f"--env-file {path}: no such file")
    try:
        load_dotenv(path, override=False, interpolate=True, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AppLoadError(f"--env-file {path}: cannot read it: {exc}") from None
    logger.debug("Loaded the environment from %s.", path)
