"""The SDK stands alone: its modules import only the standard library, httpx, anyio and each other, and
importing it (in a fresh interpreter) loads none of trio, msgpack or the server's packages."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import distroreg

SDK_DIR = Path(distroreg.__file__).resolve().parent
ALLOWED = {"httpx", "anyio", "distroreg", "__future__"}
SERVER_SIDE = ("trio", "msgpack", "distro", "cluster")

# Runs in a fresh interpreter: refuses the server-side packages (as if they were not installed), noting which
# module asked for them, then imports the SDK and everything it exports.
PROBE = r"""
import importlib.abc, json, sys

BLOCKED = ("trio", "msgpack", "distro", "cluster")
asked = []

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in BLOCKED:
            return None
        frame = sys._getframe(1)
        while frame is not None and frame.f_globals.get("__name__", "").startswith(("importlib", "_frozen")):
            frame = frame.f_back
        asked.append([name, frame.f_globals.get("__name__", "?") if frame is not None else "?"])
        raise ImportError(f"{name} is not available to the SDK")

sys.meta_path.insert(0, Refuse())
import distroreg
from distroreg import *  # noqa: F403
import distroreg.errors, distroreg.servers, distroreg.lb, distroreg.sync, distroreg.cache, distroreg.model
loaded = sorted({m.partition(".")[0] for m in sys.modules} & set(BLOCKED))
print(json.dumps({"asked": asked, "loaded": loaded, "exports": len(distroreg.__all__)}))
"""


def test_sdk_modules_import_only_httpx_anyio_and_the_standard_library() -> None:
    found: dict[str, set[str]] = {}
    for path in sorted(SDK_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in ALLOWED and top not in sys.stdlib_module_names:
                    found.setdefault(path.name, set()).add(name)
    assert found == {}
    assert len(list(SDK_DIR.glob("*.py"))) >= 7  # the scan did see the package


def test_importing_the_sdk_loads_no_server_side_package() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["loaded"] == []
    assert report["exports"] == len(distroreg.__all__)
    # httpcore (under httpx, loaded lazily) probes for trio where it is installed; the SDK itself asks for nothing.
    assert [asker for _, asker in report["asked"] if asker.partition(".")[0] == "distroreg"] == []
    assert {name for name, _ in report["asked"]} <= {"trio"}
