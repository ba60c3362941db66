"""End-to-end tests against the real compose cluster (Docker), and the chaos script's fault plan.

    .venv/bin/pytest -m e2e tests/e2e -s        # about 2-3 minutes once the image is built

The cluster runs with a 3 s heartbeat timeout and a 6 s expiry (see conftest.E2E_ENV).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, ComposeCluster

NS = "/nacos/v1/ns"
KINDS = {"kill", "pause", "partition", "restart"}


def _load_plan() -> ModuleType:
    """scripts/chaoslib/plan.py (scripts/ is not installed: it goes on sys.path, as scripts/chaos puts it)."""
    scripts = str(ROOT / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    return importlib.import_module("chaoslib.plan")


def _call(method: str, url: str, params: dict[str, Any], timeout: float = 5.0) -> tuple[int, str]:
    full = f"{url}?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(full, method=method, data=b"" if method in ("POST", "PUT") else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


# ------------------------------------------------------------------------------------------------
# The plan (no Docker needed)
# ------------------------------------------------------------------------------------------------
def test_chaos_plan_covers_the_fault_kinds() -> None:
    chaos = _load_plan()
    for seed in range(40):
        for rounds in range(1, 9):
            plan = chaos.plan_rounds(rounds, seed, 15_000)
            assert [r.index for r in plan] == list(range(1, rounds + 1))
            kinds = {r.fault for r in plan}
            if rounds >= 4:
                assert kinds == KINDS, (seed, rounds, plan)
            elif rounds >= 2:
                assert {"kill", "partition"} <= kinds, (seed, rounds, plan)
            assert all(r.node in ("node1", "node2", "node3") for r in plan)
            long_rounds = [r for r in plan if r.long]
            assert long_rounds and all(r.duration_ms > 15_000 for r in long_rounds)
            assert all(r.duration_ms >= 1_000 for r in plan)
        assert chaos.plan_rounds(6, seed, 3_000) == chaos.plan_rounds(6, seed, 3_000)


# ------------------------------------------------------------------------------------------------
# Docker
# ------------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_registration_on_node1_is_listed_by_node3(compose_cluster: ComposeCluster) -> None:
    node1, node3 = compose_cluster.urls["node1"], compose_cluster.urls["node3"]
    service = f"e2e-{os.getpid()}-{int(time.time())}"
    params = {"serviceName": service, "ip": "10.9.8.7", "port": 8080}
    assert _call("POST", node1 + NS + "/instance", params) == (200, "ok")
    listed: list[Any] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status, body = _call("GET", node3 + NS + "/instance/list", {"serviceName": service})
        assert status == 200, body
        listed = json.loads(body)["hosts"]
        if listed:
            break
        time.sleep(0.05)
    assert [(h["ip"], h["port"]) for h in listed] == [("10.9.8.7", 8080)]
    assert _call("DELETE", node1 + NS + "/instance", params) == (200, "ok")


@pytest.mark.e2e
def test_demo_profile_consumer_calls_goods_by_name(compose_cluster: ComposeCluster) -> None:
    """`--profile demo`: the consumer reaches both goods instances by service name through the SDK."""
    up = compose_cluster.script("cluster", "compose", "--profile", "demo", "up", "-d", "goods1", "goods2", "consumer",
                                timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        url = f"http://127.0.0.1:{compose_cluster.env['DEMO_CONSUMER_PORT']}/consumerTest"
        served_by: set[str] = set()
        last = ""
        deadline = time.monotonic() + 60
        while len(served_by) < 2 and time.monotonic() < deadline:
            try:
                status, last = _call("GET", url, {}, timeout=5.0)
            except OSError as exc:  # the consumer is still starting
                status, last = 0, str(exc)
            if status == 200:
                answer = json.loads(last)
                assert answer["goods"]["service"] == "goods-service" and answer["goods"]["goods"]
                served_by.add(answer["goods"]["instance"])
            else:
                time.sleep(0.2)
        logs = compose_cluster.script("cluster", "compose", "--profile", "demo", "logs", "--no-color", "--tail=20",
                                      "goods1", "goods2", "consumer")
        assert len(served_by) == 2, f"answered by {served_by}; last answer {last!r}\n{logs.stdout}"
    finally:
        compose_cluster.script("cluster", "compose", "--profile", "demo", "rm", "-f", "-s", "goods1", "goods2",
                               "consumer", timeout=120)


@pytest.mark.e2e
@pytest.mark.slow
def test_chaos_rounds_of_every_fault_kind(compose_cluster: ComposeCluster, tmp_path: Path) -> None:
    seed = int(os.environ.get("DISTRO_CHAOS_SEED", "20240607"))
    report_path = tmp_path / "chaos.json"
    cmd = [
        str(ROOT / "scripts" / "chaos"),
        "--rounds", "4", "--seed", str(seed), "--report", str(report_path),
        "--instances", "100", "--services", "10", "--quiet",
    ]
    t0 = time.monotonic()
    env = {**compose_cluster.env, "DISTRO_VENV": sys.prefix}  # scripts/chaos runs with this interpreter's venv
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=480, check=False)
    took = time.monotonic() - t0
    output = proc.stdout + proc.stderr
    print(f"\n[e2e] scripts/chaos --rounds 4 --seed {seed} took {took:.0f}s, exit {proc.returncode}\n{output[-4000:]}")
    assert report_path.exists(), output[-8000:]
    report = json.loads(report_path.read_text())
    assert proc.returncode == 0, f"chaos found violations (reproduce with --seed {seed}):\n{output[-8000:]}"

    assert report["seed"] == seed
    assert report["violations"] == []
    settings = report["settings"]
    assert settings["heartbeat_timeout_ms"] == 3000
    assert settings["instance_expire_ms"] == 6000
    rounds = report["rounds"]
    assert len(rounds) == 4
    assert {r["fault"] for r in rounds} == KINDS
    for r in rounds:
        assert r["node"] in ("node1", "node2", "node3")
        assert isinstance(r["started_at"], float)
        assert isinstance(r["duration_ms"], int) and r["duration_ms"] >= 1000
        assert isinstance(r["converge_ms"], int) and 0 <= r["converge_ms"] <= settings["converge_bound_ms"]
        assert r["violations"] == []
    assert any(r["duration_ms"] > settings["heartbeat_timeout_ms"] for r in rounds)
    assert [r["started_at"] for r in rounds] == sorted(r["started_at"] for r in rounds)
    assert report["stats"]["beats"] > 0 and report["stats"]["reads"] > 0
    assert report["stats"].get("deregistered", 0) >= 4

    # gRPC clients: bounds from the nodes' settings, every fault hit a node holding connections, clients
    # reconnected elsewhere, and some closed, froze and gave up (their instances gone: no violation above).
    grpc = settings["grpc"]
    assert grpc["present_bound_ms"] == 3000
    assert grpc["bound_components_ms"]["probe_after_idle_ms"] == 3000
    assert grpc["gone_bound_ms"] == max(6000 + 3000, 3000 + 1000 + 3000) + 3000 + 5000
    assert all(r["grpc_clients_on_node"] >= 1 for r in rounds)
    summary = report["grpc"]
    assert summary["reconnects"] >= 1
    assert {"closed", "frozen", "abandoned"} <= set(summary["states"])

    # The cluster is whole again: every node ready.
    for url in compose_cluster.urls.values():
        assert _call("GET", url + "/readyz", {})[0] == 200
