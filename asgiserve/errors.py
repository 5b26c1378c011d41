"""Typed errors shared by the CLI, the server and the supervisor, and the exit codes they map to."""
from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2  # bad option or argument (click's convention)
EXIT_STARTUP = 3  # app import/load failure, bind failure, lifespan startup failure (uvicorn/gunicorn use 3)


class AsgiserveError(Exception):
    """Base class: a problem with a one-line explanation for the user."""

    exit_code = EXIT_STARTUP


class ConfigError(AsgiserveError):
    exit_code = EXIT_USAGE


class AppLoadError(AsgiserveError):
    """APP could not be imported, was not found, or is not callable."""


class BindError(AsgiserveError):
    """A listen address could not be bound (in use, permission, bad path)."""


class LifespanError(AsgiserveError):
    """The app reported lifespan.startup.failed, or startup timed out."""
