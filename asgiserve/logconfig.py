"""A config file's ``logconfig_dict``, applied as gunicorn applies it.

gunicorn lays the dict over its own defaults (top-level keys replace the defaults' keys) and
hands it to ``logging.config.dictConfig``. So does this, over defaults that give asgiserve's
usual output, section by section: a dict that defines its own handlers keeps the defaults'
``console`` handler that the default root logger names (under gunicorn such a dict fails with
"Unable to configure root logger" unless it defines ``root`` too). Dicts written for gunicorn (or for uvicorn under its gunicorn worker) name
gunicorn's or uvicorn's loggers: each such entry also configures the asgiserve logger that
writes the same lines (``gunicorn.error`` -> ``asgiserve.error``, ``uvicorn.access`` ->
``asgiserve.access``...), unless the dict configures that logger itself. The original entries
stay, for apps that log to ``gunicorn.error`` themselves.
"""
from __future__ import annotations

import copy
import logging.config
from typing import Any

from .errors import ConfigError
from .logs import DATE_FORMAT, DEFAULT_FORMAT

DEFAULTS: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "asgiserve.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        "asgiserve.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stdout"},
        "error_console": {"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stderr"},
    },
    "formatters": {"generic": {"format": DEFAULT_FORMAT, "datefmt": DATE_FORMAT}},
}

ALIASES = {
    "gunicorn": "asgiserve", "gunicorn.error": "asgiserve.error", "gunicorn.access": "asgiserve.access",
    "uvicorn": "asgiserve", "uvicorn.error": "asgiserve.error", "uvicorn.access": "asgiserve.access",
}


def merged(user: dict[str, Any]) -> dict[str, Any]:
    """The dict dictConfig gets: defaults updated with ``user``, loggers aliased."""
    config = copy.deepcopy(DEFAULTS)
    for key, value in copy.deepcopy(user).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)  # handlers, formatters, loggers: the user's entries win
        else:
            config[key] = value
    given = user.get("loggers")
    if isinstance(given, dict):
        for name, target in ALIASES.items():
            entry = given.get(name)
            if isinstance(entry, dict) and target not in given:
                config["loggers"][target] = {k: v for k, v in entry.items() if k != "qualname"}
    return config


def apply_logconfig_dict(user: dict[str, Any]) -> None:
    try:
        logging.config.dictConfig(merged(user))
    except (ValueError, TypeError, AttributeError, ImportError, KeyError) as exc:
        raise ConfigError(f"logconfig_dict: {exc}") from None
