"""``scripts/bench --memory-profile``: the in-process breakdown accounts for what the load allocated, and the
report renders it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_memory_profile_walk_accounts_for_what_was_allocated(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"details": {"distro": {}}}))
    out = tmp_path / "profile.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchlib.memory_profile", "--instances", "600", "--json", str(out), "--into",
         str(results)],
        cwd=ROOT, env={"PYTHONPATH": f"{ROOT / 'scripts'}:{ROOT}", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    profile = json.loads(out.read_text())
    parts = profile["walk_bytes_per_instance_per_node"]
    assert parts["Instance objects"] > 0 and parts["Entry objects"] > 0
    # the walk (what one node's structures hold) and tracemalloc (what the load allocated) agree within 15%
    traced = profile["traced_bytes_per_instance_per_node"]
    assert abs(profile["walk_total"] - traced) < 0.15 * traced, profile
    assert "bytes per instance per node, by structure" in proc.stdout
    saved = json.loads(results.read_text())
    assert saved["details"]["distro"]["memory_profile"]["instances"] == 600

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from benchlib.report_text import _memory
    finally:
        sys.path.remove(str(ROOT / "scripts"))

    class Run:
        d = saved["details"]["distro"]

    text = "\n".join(_memory(Run()))  # type: ignore[arg-type]
    assert "## Memory per instance: where it goes" in text and "| Instance objects |" in text
