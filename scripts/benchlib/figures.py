"""The headline figures of a run: the targets they are judged against, their verdicts, and the table.

Shared by ``benchlib.main`` (which fills them in and prints the table) and ``benchlib.report`` (plots and
docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any

TARGETS = {
    "register_per_s": ("≥ max(etcd, 3000)/s", None),
    "converge_p50_ms": ("-", None),
    "converge_p99_ms": ("≤ 50 ms at 1,000 reg/s", 50.0),
    "push_p99_ms": ("≤ 100 ms", 100.0),
    "failover_ms": ("≤ 3,000 ms, nothing lost", 3000.0),
    "bytes_per_instance": ("≤ 1,024 B", 1024.0),
    "snapshot_load_ms": ("≤ 2,000 ms at 100k", 2000.0),
    "max_heartbeating_instances": ("20,000", 20000.0),
}


def figures(results: dict[str, Any]) -> None:
    d, e = results["details"]["distro"], results["details"].get("etcd", {})
    dist = results["distro"]
    dist["register_per_s"] = d.get("main", {}).get("register", {}).get("register_per_s")
    conv = d.get("main", {}).get("converge", {})
    dist["converge_p50_ms"] = conv.get("p50")
    dist["converge_p99_ms"] = conv.get("p99")
    dist["push_p99_ms"] = d.get("main", {}).get("push", {}).get("p99")
    dist["failover_ms"] = d.get("failover", {}).get("failover_ms")
    dist["bytes_per_instance"] = d.get("memory", {}).get("bytes_per_instance")
    dist["snapshot_load_ms"] = d.get("memory", {}).get("snapshot_load_ms")
    dist["max_heartbeating_instances"] = d.get("ramp", {}).get("max_heartbeating_instances")
    sdk = d.get("main", {}).get("sdk_push", {})
    if "p99" in sdk:
        dist["sdk_push_p99_ms"] = sdk["p99"]
    etcd = results["etcd"]
    etcd["register_per_s"] = e.get("register", {}).get("register_per_s")
    etcd["converge_p50_ms"] = e.get("converge", {}).get("p50")
    etcd["converge_p99_ms"] = e.get("converge", {}).get("p99")


def verdict(key: str, value: Any, results: dict[str, Any]) -> str:
    if value is None:
        return "n/a"
    if key == "register_per_s":
        etcd = results["etcd"].get("register_per_s") or 0
        return "met" if value >= max(3000, etcd) else "NOT met"
    if key == "converge_p50_ms":
        return ""
    target = TARGETS[key][1]
    assert target is not None
    if key == "max_heartbeating_instances":
        return "met" if value >= target else "NOT met"
    if key == "failover_ms":
        lost = results["details"]["distro"].get("failover", {}).get("violation_count", 0)
        return "met" if value <= target and not lost else "NOT met"
    return "met" if value <= target else "NOT met"


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(results: dict[str, Any]) -> str:
    rows = [("figure", "ours", "etcd", "target", "")]
    for key, (target, _) in TARGETS.items():
        ours = results["distro"].get(key)
        etcd = results["etcd"].get(key, None) if key in ("register_per_s", "converge_p50_ms", "converge_p99_ms") else None
        rows.append((key, fmt(ours), fmt(etcd) if key in results["etcd"] else "", target, verdict(key, ours, results)))
    rows.append(("loadgen ceiling_req_per_s", fmt(results["loadgen"].get("ceiling_req_per_s")), "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
