"""A run against the compose cluster: find it, play the rounds under trio, put the cluster back together
whatever happened, write the report. Exit status: see ``chaoslib.main``."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import trio

from chaoslib.compose import ROOT, NodeRef, discover_nodes, effective_timing, node_ready_sync, restore_cluster
from chaoslib.console import Console
from chaoslib.faults import ClusterReplaced
from chaoslib.plan import plan_rounds
from chaoslib.report import build_report, print_summary
from chaoslib.runner import Chaos
from chaoslib.state import GrpcBounds


def run(args: argparse.Namespace) -> int:
    """Run the planned rounds against the running cluster; the exit status."""
    console = Console(args.quiet)
    found = _find_cluster(args, console)
    if isinstance(found, int):
        return found
    nodes, timing = found
    settings = _settings(args, timing, nodes)
    console.line(
        f"chaos: seed {args.seed}, {args.rounds} round(s), heartbeat timeout {timing['heartbeat_timeout_ms']} ms, "
        f"expiry {timing['instance_expire_ms']} ms ({timing['timing_source']['heartbeat_timeout_ms']}), "
        f"{args.instances} instances in {args.services} services, report {args.report}"
    )
    g = settings["grpc"]
    console.line(
        f"  gRPC: {g['clients']} clients x {g['services_per_client']} services, keep-alive {g['keepalive_ms']} ms; "
        f"present bound {g['present_bound_ms']} ms, gone bound {g['gone_bound_ms']} ms "
        f"({g['gone_after_heal_ms']} ms after a heal) from "
        + ", ".join(f"{k} {v}" for k, v in g["bound_components_ms"].items())
    )
    for r in plan_rounds(args.rounds, args.seed, timing["heartbeat_timeout_ms"], kinds=args.kinds):
        console.line(f"  plan {r.index}: {r.fault} {r.node} {r.duration_ms / 1000:.1f}s")
    t0 = time.monotonic()
    chaos, rc = _play(args, nodes, timing, console)
    if chaos is None:
        return rc or 2
    if chaos.interrupted:
        rc = 130
    report = build_report(chaos, settings)
    report["elapsed_s"] = round(time.monotonic() - t0, 1)
    Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    print_summary(report, time.monotonic() - t0)
    print(f"report: {args.report}")
    if rc:
        return rc
    return 1 if report["violations"] else 0


def _find_cluster(args: argparse.Namespace, console: Console) -> tuple[list[NodeRef], dict[str, Any]] | int:
    """The nodes (all running and ready) and their timings; an exit status when the cluster is not up."""
    if args.up:
        console.line("running scripts/cluster up")
        if subprocess.run([str(ROOT / "scripts" / "cluster"), "up"], check=False).returncode != 0:
            print("chaos: scripts/cluster up failed", file=sys.stderr)
            return 2
    nodes = discover_nodes()
    missing = [n.name for n in nodes if not n.container]
    not_ready = [n.name for n in nodes if n.container and not node_ready_sync(n)]
    if missing or not_ready:
        print(f"chaos: the compose cluster is not running (no container: {missing or '-'}, not ready: "
              f"{not_ready or '-'}); start it with scripts/cluster up (or pass --up)", file=sys.stderr)
        return 2
    if any(not n.network for n in nodes):
        print("chaos: could not find the containers' compose network", file=sys.stderr)
        return 2
    if args.grpc_clients and any(not n.grpc_port for n in nodes):
        print("chaos: a node's gRPC port (9848 in its container) is not published; pass --grpc-clients 0 to run "
              "without gRPC clients", file=sys.stderr)
        return 2
    timing = effective_timing(args, nodes)
    for w in timing.get("warnings", []):
        console.line(f"warning: {w}")
    return nodes, timing


def _settings(args: argparse.Namespace, timing: dict[str, Any], nodes: list[NodeRef]) -> dict[str, Any]:
    """The report's ``settings``: the effective timings, the workload's size and pace, the nodes."""
    return {
        **timing,
        "rounds": args.rounds,
        "instances": args.instances,
        "services": args.services,
        "beat_interval_ms": args.beat_interval_ms or min(2_000, timing["heartbeat_timeout_ms"] // 2),
        "read_interval_ms": args.read_interval_ms,
        "converge_bound_ms": args.converge_bound_ms or timing["instance_expire_ms"] + 10_000,
        "dereg_per_round": max(1, round(args.instances * args.dereg_fraction)),
        "silent_per_round": max(1, round(args.instances * args.silent_fraction)),
        "grpc": GrpcBounds.from_settings(args, timing).report(),
        "nodes": {n.name: {"url": n.url, "grpc_port": n.grpc_port, "container": n.container[:12],
                           "network": n.network} for n in nodes},
    }


def _play(args: argparse.Namespace, nodes: list[NodeRef], timing: dict[str, Any],
          console: Console) -> tuple[Chaos | None, int]:
    """The run under trio, then the cluster restored whatever happened (Ctrl-C included)."""
    chaos: Chaos | None = None

    async def amain() -> None:
        nonlocal chaos
        chaos = Chaos(args, nodes, timing, console)
        await chaos.run()

    rc = 0
    try:
        trio.run(amain)
    except BaseException as exc:  # the cluster is restored whatever happened
        replaced = _replaced(exc)
        if _is_interrupt(exc):
            console.line("interrupted: restoring the cluster")
            rc = 130
            if chaos is not None:
                chaos.interrupted = True
        elif replaced is not None:
            console.line(f"ABORTED: {replaced}")
            rc = 2
            if chaos is not None:
                chaos.aborted = str(replaced)
        elif isinstance(exc, SystemExit):
            raise
        else:
            traceback.print_exception(exc)
            console.line("chaos crashed: restoring the cluster")
            rc = 2
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            restore_cluster(nodes, say=console.line)
        finally:
            signal.signal(signal.SIGINT, previous)
    return chaos, rc


def _is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C, also when trio delivers it wrapped in an exception group."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(lambda e: isinstance(e, KeyboardInterrupt)) is not None
    return False


def _replaced(exc: BaseException) -> ClusterReplaced | None:
    """The ClusterReplaced in ``exc`` (also inside an exception group), if any."""
    if isinstance(exc, ClusterReplaced):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        group = exc.subgroup(lambda e: isinstance(e, ClusterReplaced))
        while isinstance(group, BaseExceptionGroup):
            group = group.exceptions[0]
        return group
    return None

