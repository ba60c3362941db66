"""CI smoke test of ``scripts/bench``: every phase runs and every figure comes out numeric.

It runs ``scripts/bench --smoke`` (tiny sizes and shortened heartbeat timeouts, about one to two minutes)
rather than ``--quick`` (about three minutes on an idle 2-core machine, more on a busy one) to keep the
suite's budget. No timing is asserted: the benchmark reports; its targets are in scripts/benchlib/figures.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FIGURES = {
    "distro": [
        "register_per_s",
        "list_per_s",
        "converge_p50_ms",
        "converge_p99_ms",
        "push_p99_ms",
        "sdk_push_p99_ms",
        "failover_ms",
        "bytes_per_instance",
        "snapshot_load_ms",
        "max_heartbeating_instances",
    ],
    "etcd": ["register_per_s", "converge_p50_ms", "converge_p99_ms"],
    "loadgen": ["ceiling_req_per_s"],
}


def _why_no_etcd() -> str | None:
    if shutil.which("etcd"):
        return None
    if shutil.which("apt-get") is None:
        return "etcd is not installed and there is no apt-get to install Debian's etcd-server"
    if os.geteuid() != 0:
        return "etcd is not installed and installing Debian's etcd-server needs root"
    return None


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.slow
def test_bench_smoke_produces_every_figure(tmp_path: Path) -> None:
    reason = _why_no_etcd()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "out.json"
    env = {**os.environ, "DISTRO_VENV": sys.prefix}
    proc = subprocess.run(
        [str(ROOT / "scripts" / "bench"), "--smoke", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    log = f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    assert out.exists(), log
    data = json.loads(out.read_text())
    if data["details"].get("etcd", {}).get("skipped"):
        pytest.skip(f"etcd could not be installed: {data['details']['etcd']['skipped']}")
    assert proc.returncode == 0, log
    for key in ("cpus", "model", "python", "date"):
        assert data["machine"].get(key), f"machine.{key} missing"
    missing = [
        f"{section}.{key} = {data.get(section, {}).get(key)!r}"
        for section, keys in FIGURES.items()
        for key in keys
        if not _numeric(data.get(section, {}).get(key))
    ]
    assert not missing, "figures missing or not numeric: " + ", ".join(missing) + "\n" + log
    listed = data["details"]["distro"]["main"]["list"]
    assert (listed["services"], listed["instances_per_service"]) == (
        data["settings"]["list_services"], data["settings"]["list_instances"]), listed
