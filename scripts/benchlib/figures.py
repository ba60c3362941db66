"""The headline figures of a run: the targets they are judged against, their verdicts, and the table.

Shared by ``benchlib.main`` (which fills them in and prints the table) and ``benchlib.report`` (plots and
docs/benchmarks.md). The targets are those of docs/design.md section 6 (issue 15): throughputs at least 1.5
times r-nacos's in the same run, server CPU per operation at most two thirds of r-nacos's, and absolute
bounds for the rest. Where r-nacos did not run, a ratio target reads "n/a".
"""

from __future__ import annotations

from typing import Any

# key -> (target as text, bound, kind): kind "min_ratio"/"max_ratio" compare with r-nacos's figure,
# "max"/"min" with the bound itself, "" reports only.
TARGETS: dict[str, tuple[str, float | None, str]] = {
    "register_per_s": ("≥ 1.5x r-nacos", 1.5, "min_ratio"),
    "bulk_register_per_s": ("≥ 1.5x r-nacos", 1.5, "min_ratio"),
    "beats_per_s": ("≥ 1.5x r-nacos", 1.5, "min_ratio"),
    "list_per_s": ("≥ 1.5x r-nacos", 1.5, "min_ratio"),
    "cpu_us_per_register": ("≤ 2/3 of r-nacos's", 2 / 3, "max_ratio"),
    "cpu_us_per_beat": ("≤ 2/3 of r-nacos's", 2 / 3, "max_ratio"),
    "converge_p50_ms": ("-", None, ""),
    "converge_p99_ms": ("≤ 10 ms at 1,000 reg/s", 10.0, "max"),
    "push_p99_ms": ("≤ 50 ms", 50.0, "max"),
    "failover_ms": ("≤ 3,000 ms, nothing lost", 3000.0, "max"),
    "bytes_per_instance": ("≤ 400 B", 400.0, "max"),
    "snapshot_load_ms": ("≤ 2,000 ms at 100k", 2000.0, "max"),
    "max_heartbeating_instances": ("100,000", 100000.0, "min"),
    "grpc_register_per_s": ("≥ 1.5x r-nacos", 1.5, "min_ratio"),
    "cpu_us_per_grpc_register": ("≤ 2/3 of r-nacos's", 2 / 3, "max_ratio"),
    "grpc_push_p99_ms": ("≤ 50 ms", 50.0, "max"),
    "grpc_clients_held": ("10,000 (full mode)", 10000.0, "min"),
    "grpc_bytes_per_connection": ("-", None, ""),
}

ETCD_KEYS = ("register_per_s", "converge_p50_ms", "converge_p99_ms")


def _system_figures(d: dict[str, Any], into: dict[str, Any]) -> None:
    """The figures both Nacos-API systems produce, from their ``details`` (ours or r-nacos's)."""
    main, mem = d.get("main", {}), d.get("memory", {})
    reg = main.get("register", {})
    into["register_per_s"] = reg.get("register_per_s")
    into["bulk_register_per_s"] = mem.get("register", {}).get("ok_per_s")
    into["beats_per_s"] = mem.get("beat", {}).get("ok_per_s")
    into["list_per_s"] = main.get("list", {}).get("ok_per_s")
    best = [r for r in reg.get("runs", []) if r.get("config") == reg.get("best")]
    into["cpu_us_per_register"] = best[0].get("server_cpu_us_per_ok") if best else None
    into["cpu_us_per_beat"] = mem.get("beat", {}).get("server_cpu_us_per_ok")
    into["converge_p50_ms"] = main.get("converge", {}).get("p50")
    into["converge_p99_ms"] = main.get("converge", {}).get("p99")
    into["push_p99_ms"] = main.get("push", {}).get("p99")
    into["bytes_per_instance"] = mem.get("bytes_per_instance")
    into["snapshot_load_ms"] = mem.get("snapshot_load_ms")
    into["max_heartbeating_instances"] = d.get("ramp", {}).get("max_heartbeating_instances")
    _grpc_figures(d.get("grpc", {}), into)


def _grpc_figures(grpc: dict[str, Any], into: dict[str, Any]) -> None:
    """The gRPC phase's figures (``benchlib.grpcbench``): the lean client's best round, the push probe, the
    clients held (set up and still connected at the end) and the node memory per connection."""
    reg, hold = grpc.get("register", {}), grpc.get("hold", {})
    into["grpc_register_per_s"] = reg.get("per_s")
    into["cpu_us_per_grpc_register"] = reg.get("server_cpu_us_per_reg")
    into["grpc_push_p99_ms"] = grpc.get("push", {}).get("p99_ms")
    held = None
    if hold.get("connections") is not None:
        held = hold["connections"] - (hold.get("failed_setups") or 0)
        if hold.get("alive_at_end") is not None:
            held = min(held, hold["alive_at_end"])
    into["grpc_clients_held"] = held
    into["grpc_bytes_per_connection"] = hold.get("bytes_per_connection")


def list_size(results: dict[str, Any]) -> str | None:
    """The size of the services the list phase listed ("64 services of 100 instances each"), the same for
    every system that ran it (each system's own when they differ); None for runs from before the list phase
    had a set of its own (they listed what their registration run left)."""
    sizes = {}
    for name, d in (("ours", results["details"].get("distro", {})), ("r-nacos", results["details"].get("rnacos", {}))):
        run = d.get("main", {}).get("list", {}) if isinstance(d, dict) else {}
        if run.get("instances_per_service") is not None:
            sizes[name] = f"{run['services']:,} services of {run['instances_per_service']:,} instances each"
    if not sizes:
        return None
    if len(set(sizes.values())) == 1:
        return next(iter(sizes.values())) + ", registered for it" + (" (ours and r-nacos alike)" if len(sizes) > 1
                                                                     else "")
    return "; ".join(f"{name}: {size}" for name, size in sizes.items()) + " (NOT the same size)"


def figures(results: dict[str, Any]) -> None:
    d, e = results["details"]["distro"], results["details"].get("etcd", {})
    dist = results["distro"]
    _system_figures(d, dist)
    dist["failover_ms"] = d.get("failover", {}).get("failover_ms")
    sdk = d.get("main", {}).get("sdk_push", {})
    if "p99" in sdk:
        dist["sdk_push_p99_ms"] = sdk["p99"]
    etcd = results["etcd"]
    etcd["register_per_s"] = e.get("register", {}).get("register_per_s")
    etcd["converge_p50_ms"] = e.get("converge", {}).get("p50")
    etcd["converge_p99_ms"] = e.get("converge", {}).get("p99")
    rn = results.setdefault("rnacos", {})
    r = results["details"].get("rnacos", {})
    if r and not r.get("skipped"):
        _system_figures(r, rn)
        rn["restart_healthy_ms"] = r.get("memory", {}).get("restart_healthy_ms")


def ratio(key: str, results: dict[str, Any]) -> float | None:
    """Ours divided by r-nacos's, for a figure both have."""
    ours, theirs = results["distro"].get(key), results.get("rnacos", {}).get(key)
    if not isinstance(ours, int | float) or not isinstance(theirs, int | float) or theirs == 0:
        return None
    return ours / theirs


def verdict(key: str, value: Any, results: dict[str, Any]) -> str:
    _, bound, kind = TARGETS[key]
    if value is None or not kind:
        return "n/a" if value is None else ""
    assert bound is not None
    if kind in ("min_ratio", "max_ratio"):
        r = ratio(key, results)
        if r is None:
            return "n/a"
        return "met" if (r >= bound if kind == "min_ratio" else r <= bound) else "NOT met"
    if key == "failover_ms":
        lost = results["details"]["distro"].get("failover", {}).get("violation_count", 0)
        return "met" if value <= bound and not lost else "NOT met"
    return "met" if (value >= bound if kind == "min" else value <= bound) else "NOT met"


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def table(results: dict[str, Any]) -> str:
    rows = [("figure", "ours", "etcd", "r-nacos", "ours/r-nacos", "target", "")]
    for key, (target, _, _) in TARGETS.items():
        ours = results["distro"].get(key)
        etcd = fmt(results["etcd"].get(key)) if key in ETCD_KEYS else ""
        rn = results.get("rnacos", {}).get(key)
        rows.append((key, fmt(ours), etcd, fmt(rn), fmt_ratio(ratio(key, results)), target,
                     verdict(key, ours, results)))
    rows.append(("loadgen ceiling_req_per_s", fmt(results["loadgen"].get("ceiling_req_per_s")), "", "", "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    size = list_size(results)
    if size:
        lines.append(f"list_per_s lists {size}")
    return "\n".join(lines)
