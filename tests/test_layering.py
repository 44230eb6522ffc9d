"""Dependency direction and compiler flags, checked by reading the source.

Kernels must stay free of River, Kafka, Prometheus and logging so they can be compiled,
tested and reused alone; models never touch metrics; nothing imports the command line.
Numba flags are set in one place so the NaN/inf guards cannot be compiled away.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from stream_rnn.cells import _flags

PACKAGE = Path(__file__).resolve().parents[1] / "stream_rnn"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}

# Package (first path part under stream_rnn/) -> third-party and internal modules allowed.
ALLOWED = {
    "cells": ({"numpy", "numba"}, {"cells"}),
    "state": ({"numpy"}, {"state"}),
    "models": ({"numpy", "river"}, {"cells", "state", "models"}),
    "evaluation": ({"numpy"}, {"evaluation"}),
    # Generators return incidents of the scenario format, and the recorder writes it.
    "synth": ({"numpy"}, {"synth", "io"}),
    "io": ({"kafka", "confluent_kafka", "orjson"}, {"io"}),
    "scoring": ({"numpy", "river"}, {"scoring", "cells", "models"}),
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


@pytest.mark.parametrize("rel,tree", list(_modules()), ids=lambda v: str(v) if isinstance(
    v, Path) else "")
def test_imports_follow_the_dependency_direction(rel, tree):
    layer = rel.parts[0] if len(rel.parts) > 1 else None
    for name in _imports(tree):
        top = name.split(".")[0]
        if top in STDLIB:
            continue
        if top == "stream_rnn":
            target = name.split(".")[1] if "." in name else ""
            assert target not in {"cli", "commands", "daemon"} or layer in {None, "commands"}, (
                f"{rel} imports {name}: nothing imports the command line or the daemon")
            if layer in ALLOWED:
                assert target in ALLOWED[layer][1], f"{rel} ({layer}) may not import {name}"
        elif layer in ALLOWED:
            assert top in ALLOWED[layer][0], f"{rel} ({layer}) may not import {name}"


def test_fastmath_keeps_nan_and_inf_semantics():
    assert not {"nnan", "ninf", "fast"} & set(_flags.FASTMATH)


def test_every_kernel_uses_the_shared_flags():
    # numba.njit/jit only inside _flags.py; kernels decorate with _flags.jit, which never
    # combines parallel=True with cache=True.
    for rel, tree in _modules():
        if rel.name == "_flags.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"njit", "jit", "vectorize"}:
                assert not (isinstance(node.value, ast.Name) and node.value.id == "numba"), (
                    f"{rel} uses numba.{node.attr} directly; use stream_rnn.cells._flags.jit")
            if isinstance(node, ast.keyword) and node.arg == "parallel":
                pytest.fail(f"{rel}: parallel kernels are not cached safely; keep them serial")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "numba":
                names = {a.name for a in node.names}
                assert not names & {"njit", "jit"}, f"{rel} imports numba.{names} directly"
    assert _flags.jit.keywords["cache"] is True
    assert "parallel" not in _flags.jit.keywords
