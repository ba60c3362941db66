"""The run's JSON report and the summary printed at the end."""

from __future__ import annotations

from collections import Counter
from typing import Any

from chaoslib.runner import Chaos


def build_report(chaos: Chaos, settings: dict[str, Any]) -> dict[str, Any]:
    """The report written to --report (its format is a contract: tests/e2e read it)."""
    rec = chaos.rec
    rounds = []
    for rs in rec.rounds:
        r = dict(rs.record)
        r.setdefault("duration_ms", None)
        r.setdefault("converge_ms", None)
        r.setdefault("stats", dict(rs.stats))
        r["violations"] = [_clean(v) for v in rs.violations]
        rounds.append(r)
    return {
        "rounds": rounds,
        "violations": [_clean(v) for v in rec.violations],
        "seed": chaos.args.seed,
        "settings": settings,
        "final": chaos.final,
        "stats": dict(rec.stats),
        "warnings": rec.warnings,
        "warning_counts": dict(rec.warning_counts),
        "interrupted": chaos.interrupted,
        "aborted": chaos.aborted,
        "services_prefix": f"chaos-{chaos.workload.tag}-",
        "grpc": chaos.grpc.summary(),
    }


def _clean(v: dict[str, Any]) -> dict[str, Any]:
    return {k: val for k, val in v.items() if not k.startswith("_")}


def print_summary(report: dict[str, Any], elapsed: float) -> None:
    """A table of the rounds, the counters, and PASS / FAIL with the first violations."""
    s = report["settings"]
    print()
    print(f"== chaos summary: seed {report['seed']}, {len(report['rounds'])} round(s), {elapsed:.0f}s, "
          f"heartbeat timeout {s['heartbeat_timeout_ms']} ms, expiry {s['instance_expire_ms']} ms")
    g = s["grpc"]
    print(f"   gRPC: present bound {g['present_bound_ms']} ms, gone bound {g['gone_bound_ms']} ms")
    print(f"   {'#':>2}  {'fault':<9} {'node':<6} {'held':>7} {'ready':>8} {'converge':>9} {'grpc@node':>9} "
          f"{'reconnect':>9}  violations")
    for r in report["rounds"]:
        held = "-" if r.get("duration_ms") is None else f"{r['duration_ms'] / 1000:.1f}s"
        ready = "-" if r.get("ready_ms") is None else f"{r['ready_ms']} ms"
        conv = "never" if r.get("converge_ms") is None else f"{r['converge_ms']} ms"
        on_node = r.get("grpc_clients_on_node", "-")
        recon = "-" if r.get("grpc_max_reconnect_ms") is None else f"{r['grpc_max_reconnect_ms']} ms"
        print(f"   {r['round']:>2}  {r['fault']:<9} {r['node']:<6} {held:>7} {ready:>8} {conv:>9} {on_node:>9} "
              f"{recon:>9}  {len(r['violations'])}")
    convs = [r["converge_ms"] for r in report["rounds"] if r.get("converge_ms") is not None]
    if convs:
        print(f"   converge_ms: worst {max(convs)}, median {sorted(convs)[len(convs) // 2]}")
    st = report["stats"]
    print(f"   beats {st.get('beats', 0)} ok, {st.get('beat_errors', 0)} errors, {st.get('beats_failed', 0)} failed "
          f"on 2 nodes, {st.get('beats_20404', 0)} answered 20404 ({st.get('reregistered', 0)} re-registered); "
          f"reads {st.get('reads', 0)} ok, {st.get('read_errors', 0)} failed; deregistered {st.get('deregistered', 0)}, "
          f"silenced {st.get('silenced', 0)}")
    gs = report["grpc"]
    print(f"   gRPC clients {gs['clients']} ({gs['fragile']} fragile): {gs['states']}; reconnects {gs['reconnects']} "
          f"({gs['reconnect_ms']}); listed after their end: {gs['last_listed_after_end_ms']}")
    if report["warning_counts"]:
        print("   warnings (not invariants): " + ", ".join(f"{k} x{v}" for k, v in report["warning_counts"].items()))
    _print_verdict(report)


def _print_verdict(report: dict[str, Any]) -> None:
    if report["aborted"]:
        print(f"ABORTED (the report is partial; violations after the cluster changed mean nothing): "
              f"{report['aborted']}")
    if report["violations"]:
        kinds = Counter(v["invariant"] for v in report["violations"])
        print(f"FAIL: {len(report['violations'])} violation(s): " + ", ".join(f"{k} x{v}" for k, v in kinds.items()))
        for v in report["violations"][:20]:
            where = " ".join(f"{k}={v[k]}" for k in ("round", "node", "service", "instance") if v.get(k) is not None)
            print(f"   - {v['at_iso']} {v['invariant']} {where}: {v.get('detail', '')}")
    elif report["aborted"]:
        pass
    elif report["interrupted"]:
        print("INTERRUPTED: no violations until then; the report is partial")
    else:
        print("PASS: no violations")
