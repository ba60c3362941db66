"""The core is pure: no module of ``distro/`` outside ``distro/testing/`` imports IO, clocks, randomness or
concurrency (trio, socket, time, random, asyncio, threading, httpx, or any submodule of them).

Every .py file is parsed and every ``import`` / ``from ... import`` statement is inspected, at any depth
(inside functions, ``if TYPE_CHECKING:`` blocks, try/except...). Dynamic imports through ``importlib`` or
``__import__`` are out of scope.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DISTRO = ROOT / "distro"
FORBIDDEN = frozenset({"trio", "socket", "time", "random", "asyncio", "threading", "httpx"})


def core_modules() -> list[Path]:
    return sorted(p for p in DISTRO.rglob("*.py") if "testing" not in p.relative_to(DISTRO).parts[:-1])


def forbidden_imports(source: str, filename: str) -> list[str]:
    """``line: module`` for every forbidden import in ``source``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if name.split(".")[0] in FORBIDDEN:
                found.append(f"{filename}:{node.lineno}: {name}")
    return found


def test_core_modules_are_found() -> None:
    names = {p.relative_to(DISTRO).as_posix() for p in core_modules()}
    assert {"node.py", "store.py", "datum.py", "ownership.py"} <= names
    assert not any(name.startswith("testing/") for name in names)


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_core_module_is_pure(path: Path) -> None:
    assert forbidden_imports(path.read_text("utf-8"), str(path.relative_to(ROOT))) == []


@pytest.mark.parametrize(
    "source",
    [
        "import time",
        "import os, random",
        "import trio.testing",
        "from socket import socket",
        "from asyncio.tasks import sleep",
        "import httpx as h",
        "def f():\n    import threading\n",
        "try:\n    pass\nexcept ImportError:\n    from time import monotonic\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import trio\n",
        "class C:\n    def m(self):\n        if True:\n            from random import Random\n",
    ],
)
def test_detector_finds_forbidden_imports(source: str) -> None:
    assert forbidden_imports(source, "x.py")


@pytest.mark.parametrize(
    "source",
    [
        "import timeit",
        "import randomize",
        "from datetime import time",
        "from . import time",
        "from .random import x",
        "import hashlib, json",
        "from distro.socket_like import x",
    ],
)
def test_detector_allows_lookalikes(source: str) -> None:
    assert forbidden_imports(source, "x.py") == []
