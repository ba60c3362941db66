"""The SDK as a distribution of its own: ``pip install ./client`` into a fresh venv that already has PyPI's
``distro`` package leaves that package working (it used to be overwritten by the server's ``distro``), brings
in neither trio nor msgpack, and uninstalling the SDK leaves ``distro`` intact too. Needs PyPI."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

import distroreg

ROOT = Path(__file__).resolve().parent.parent.parent
PYPI_DISTRO = "distro==1.9.0"

CHECK = r"""
import json, sys
from importlib.metadata import files
import distro
distro_id = distro.id()
import distroreg
top = sorted({f.parts[0] for f in files("distroreg-client") if not f.parts[0].endswith(".dist-info")})
print(json.dumps({"distro_file": distro.__file__, "distro_id": distro_id, "sdk": distroreg.__version__, "top": top,
                  "loaded": sorted({m.partition(".")[0] for m in sys.modules} & {"trio", "msgpack", "cluster"})}))
"""


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, cwd=cwd,
                            check=False)
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.slow
def test_sdk_installs_beside_pypi_distro_without_harming_it(tmp_path: Path) -> None:
    # A copy of client/, so the build leaves nothing in the checkout.
    sdk = tmp_path / "client"
    shutil.copytree(ROOT / "client", sdk, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    pip = (python, "-m", "pip", "--disable-pip-version-check", "--no-input", "install", "--quiet")
    _run(*pip, PYPI_DISTRO)
    _run(*pip, sdk)

    report = json.loads(_run(python, "-c", CHECK, cwd=tmp_path))
    assert report["distro_file"].startswith(str(env_dir)), report  # PyPI's distro, not ours
    assert isinstance(report["distro_id"], str) and report["sdk"] == distroreg.__version__
    assert report["loaded"] == []
    assert report["top"] == ["distroreg"]  # the SDK's files: its own package and nothing else
    installed = {d["name"].lower() for d in json.loads(_run(python, "-m", "pip", "list", "--format=json"))}
    assert {"distro", "distroreg-client", "httpx", "anyio"} <= installed
    assert not installed & {"trio", "msgpack", "distro-registry"}

    _run(python, "-m", "pip", "uninstall", "--yes", "--quiet", "distroreg-client")
    _run(python, "-c", "import distro; distro.id(); distro.linux_distribution", cwd=tmp_path)


def test_server_pins_the_sdk_version_it_ships() -> None:
    """setup.py's plain requirement (used for the image's wheels) names the SDK version in client/."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    pins = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            for t in n.targets if isinstance(t, ast.Name)}
    assert pins["SDK_VERSION"] == distroreg.__version__
