"""The optional mypyc build (setup.py, docs/mypyc.md).

Under ``./dev test --compiled`` (ASGISERVE_EXPECT_COMPILED=1) every module setup.py lists must
have been imported from its compiled extension, or the run would test the pure code twice.
"""
from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def compiled_modules() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "COMPILED" for t in node.targets):
            paths = ast.literal_eval(node.value)
            return [p.removesuffix(".py").replace("/", ".") for p in paths]
    raise AssertionError("setup.py has no COMPILED list")


def test_compiled_list_names_existing_modules() -> None:
    for name in compiled_modules():
        assert (ROOT / (name.replace(".", "/") + ".py")).is_file(), name


@pytest.mark.skipif(os.environ.get("ASGISERVE_EXPECT_COMPILED") != "1", reason="not a compiled run")
def test_modules_are_compiled() -> None:
    for name in compiled_modules():
        module = importlib.import_module(name)
        assert module.__file__ is not None and module.__file__.endswith(".so"), (name, module.__file__)


def test_client_disconnected_is_one_class() -> None:
    # Defined in asgi/errors.py (mypyc cannot compile an OSError subclass), found in asgi.http.
    from asgiserve.asgi import errors, http

    assert http.ClientDisconnected is errors.ClientDisconnected
    assert http.ClientDisconnected.__module__ == "asgiserve.asgi.http"
    assert issubclass(http.ClientDisconnected, OSError)
