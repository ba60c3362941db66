"""The gRPC front door's part of the report: its section of docs/benchmarks.md and its plot.

Fed by the ``grpc`` phase (``benchlib.grpcbench``): alternating rounds of v1 HTTP, gRPC with the lean
generator and gRPC with grpcio on one cluster, change -> gRPC subscriber, connected clients held; and by
r-nacos's gRPC phase of the same run (the same, without grpcio's rounds), shown beside ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchlib.figures import fmt

PLOT = "grpc_register.png"
PLOT_TITLE = "gRPC against v1 HTTP registrations on one cluster per system, same run"
_SERIES = (("http", "v1 HTTP"), ("raw", "gRPC, lean client"), ("grpcio", "gRPC, grpcio client"))


def _rounds(reg: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The rounds of each series (older results hold only the gRPC rounds of grpcio)."""
    return {
        "http": list(reg.get("http", {}).get("rounds", [])),
        "raw": list(reg.get("rounds", [])) if reg.get("client") == "grpcraw" else [],
        "grpcio": (list(reg.get("grpcio", {}).get("rounds", [])) if "grpcio" in reg or reg.get("client") == "grpcraw"
                   else list(reg.get("rounds", []))),
    }


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def section(grpc: dict[str, Any], rn_grpc: dict[str, Any] | None = None) -> list[str]:
    """The markdown lines (none without a gRPC phase in the results); with r-nacos's gRPC phase of the same
    run (``rn_grpc``), a table of the two side by side."""
    reg = grpc.get("register")
    if not reg:
        return []
    out = ["## gRPC front door (Nacos 2.x/3.x clients)\n"]
    w = out.append
    run = grpc.get("run")
    if run:
        load = ", ".join(f"{x:.1f}" for x in run.get("loadavg_at_start", []))
        w(f"From its own run: `{run.get('command')}`, {run.get('date')}, load average at start {load} "
          "(the other figures on this page come from the run described above).\n")
    http, grpcio = reg.get("http", {}), reg.get("grpcio", {})
    w("Three fresh nodes (heartbeat timeouts of an hour), 48 connections spread over them, one call in flight "
      "each, closed loop. In alternating rounds on the same cluster: v1 HTTP registrations (the main phase's "
      "load generator: a new instance per call), gRPC `InstanceRequest` registrations with the lean generator "
      "(`scripts/benchlib/grpcraw.py`: raw HTTP/2 frames on trio) and with grpcio's Python client "
      "(`scripts/benchlib/grpcload.py`); each gRPC connection registers its instance in 64 services in turn, "
      "its weight flipped every pass, so every call is a write. Both protocols get the same load: 48 "
      "connections, one call in flight each, 64 services, one replicated write per call (HTTP inserts a new "
      "instance, gRPC rewrites its connection's instance of that service, which is how a Nacos connection "
      "holds one instance per service). The two generators do the same work per call: the HTTP one formats "
      "its request line and checks that the body is `ok`; the lean gRPC one puts each registration together "
      "from bytes built before the run (the JSON body but its requestId, as a Nacos client would send it, and "
      "its protobuf fields, byte for byte what the Payload encoder gives: tests/bench/test_grpcraw.py), "
      "handles every frame of a read in one pass, and checks that the answer's body says "
      "`\"resultCode\":200` (Nacos's `Response.isSuccess()`; r-nacos writes no `success` field). Two cores are shared by the nodes and the generator, so a generator's CPU per "
      "call is taken from the nodes; its own cost is in the table. The best round of each is shown; server CPU "
      "is summed over the three node processes per successful call. docs/grpc.md describes the lean unary "
      "path and its measurements.\n")
    w("| figure | v1 HTTP | gRPC, lean client | gRPC, grpcio client |")
    w("|---|---|---|---|")
    w(f"| registrations/s | {fmt(http.get('per_s'))} | {fmt(reg.get('per_s'))} "
      f"(x{_ratio(reg.get('ratio'))}) | {fmt(grpcio.get('per_s'))} (x{_ratio(reg.get('ratio_grpcio'))}) |")
    w(f"| server CPU per registration, µs (three nodes) | {fmt(http.get('server_cpu_us_per_reg'))} | "
      f"{fmt(reg.get('server_cpu_us_per_reg'))} | {fmt(grpcio.get('server_cpu_us_per_reg'))} |")
    w(f"| load generator CPU per call, µs | {fmt(http.get('client_cpu_us_per_call'))} | "
      f"{fmt(reg.get('client_cpu_us_per_call'))} | {fmt(grpcio.get('client_cpu_us_per_call'))} |")
    rounds = _rounds(reg)
    w("")
    w("Every round (registrations/s): " + "; ".join(
        f"{label} " + ", ".join(fmt(r.get("per_s")) for r in rounds[key])
        for key, label in _SERIES if rounds[key]) + ".\n")
    push, hold = grpc.get("push", {}), grpc.get("hold", {})
    w("| figure | measured | target (issue 11) |")
    w("|---|---|---|")
    w(f"| gRPC registrations/s against v1 HTTP, same run | x{_ratio(reg.get('ratio'))} (lean client), "
      f"x{_ratio(reg.get('ratio_grpcio'))} (grpcio) | ≥ x1 |")
    if push:
        w(f"| change (v1 HTTP update on node 2) -> gRPC subscriber on node 1, p50 / p99 | "
          f"{fmt(push.get('p50_ms'))} / {fmt(push.get('p99_ms'))} ms ({push.get('received')} samples) | p99 ≤ 50 ms |")
    if hold:
        w(f"| connected clients held, one instance and one subscription each | {fmt(hold.get('connections'))} "
          f"({hold.get('failed_setups')} failed setups; open per node {hold.get('open_per_node')}; every node lists "
          f"{hold.get('listed_per_node')}) | 10,000 (full mode) |")
        w(f"| node memory per connection (RSS of the three nodes / connections) | "
          f"{fmt(hold.get('bytes_per_connection'))} B | reported |")
    w("")
    if push:
        w("The push probe makes one change at a time (a v1 HTTP update of the instance's metadata with a new "
          "`seq`), waits for the push that carries it (up to 5 s), and makes the next change 20 ms later"
          + (f"; {push.get('missed')} of {push.get('samples')} changes brought no push within that time"
             if push.get("missed") else "")
          + (". (This run's probe changed the instance every 20 ms without waiting, so a push that carried "
             "several changes timed only the last.)" if "coalesced_or_lost" in push else ".") + "\n")
    if rn_grpc and rn_grpc.get("register"):
        out += _side_by_side(grpc, rn_grpc)
    return out


def _x(ours: Any, theirs: Any) -> str:
    ok = isinstance(ours, int | float) and isinstance(theirs, int | float) and theirs
    return f"{ours / theirs:.2f}x" if ok else "-"


def _held(hold: dict[str, Any]) -> str:
    if not hold:
        return "-"
    return (f"{fmt(hold.get('connections'))} ({hold.get('failed_setups')} failed setups, "
            f"{fmt(hold.get('alive_at_end'))} still connected at the end; open per node "
            f"{hold.get('open_per_node')}, listed per node {hold.get('listed_per_node')})")


def _side_by_side(grpc: dict[str, Any], rn: dict[str, Any]) -> list[str]:
    """Ours and r-nacos's gRPC figures of the same run."""
    out = ["### Ours and r-nacos 0.8.8 over gRPC, same run\n"]
    w = out.append
    w("r-nacos's three members get the same phase: fresh members (naming timeouts of an hour for the "
      "registrations and the push probe, its defaults for the clients held), gRPC on each member's HTTP port + "
      "1000, the same alternating rounds of v1 HTTP and lean-client gRPC registrations (not grpcio's client, "
      "whose own CPU per call is what it measures here), the same push probe (a v1 HTTP update on member 2, "
      "the `NotifySubscriberRequest` on member 1's subscriber, one change at a time) and the same clients held, set up as a Nacos "
      "client does (`ServerCheckRequest`, `ConnectionSetupRequest` on the bi-stream, a `HealthCheckRequest` "
      "until it passes). Its open connections are read from its `/metrics` (`grpc_conn_size`, collected every "
      "second on the members that hold the clients instead of every 15 s), its instances from `catalog/services`.\n")
    reg, rreg = grpc["register"], rn["register"]
    http, rhttp = reg.get("http", {}), rreg.get("http", {})
    push, rpush = grpc.get("push", {}), rn.get("push", {})
    hold, rhold = grpc.get("hold", {}), rn.get("hold", {})
    w("| figure | ours | r-nacos 0.8.8 | ours / r-nacos |")
    w("|---|---|---|---|")
    w(f"| gRPC registrations/s (lean client, best round) | {fmt(reg.get('per_s'))} | {fmt(rreg.get('per_s'))} | "
      f"{_x(reg.get('per_s'), rreg.get('per_s'))} |")
    w(f"| server CPU per gRPC registration, µs (three processes) | {fmt(reg.get('server_cpu_us_per_reg'))} | "
      f"{fmt(rreg.get('server_cpu_us_per_reg'))} | "
      f"{_x(reg.get('server_cpu_us_per_reg'), rreg.get('server_cpu_us_per_reg'))} |")
    w(f"| v1 HTTP registrations/s in the same rounds | {fmt(http.get('per_s'))} | {fmt(rhttp.get('per_s'))} | "
      f"{_x(http.get('per_s'), rhttp.get('per_s'))} |")
    w(f"| gRPC against v1 HTTP, best rounds | x{_ratio(reg.get('ratio'))} | x{_ratio(rreg.get('ratio'))} | |")
    w(f"| change -> gRPC subscriber, p50 / p99 ms | {fmt(push.get('p50_ms'))} / {fmt(push.get('p99_ms'))} "
      f"({push.get('received')} of {push.get('samples')}) | {fmt(rpush.get('p50_ms'))} / "
      f"{fmt(rpush.get('p99_ms'))} ({rpush.get('received')} of {rpush.get('samples')}) | "
      f"{_x(push.get('p99_ms'), rpush.get('p99_ms'))} (p99) |")
    w(f"| connected clients held | {_held(hold)} | {_held(rhold)} | |")
    w(f"| node memory per connection, B | {fmt(hold.get('bytes_per_connection'))} | "
      f"{fmt(rhold.get('bytes_per_connection'))} | {_x(hold.get('bytes_per_connection'), rhold.get('bytes_per_connection'))} |")
    w("")
    rounds = _rounds(rreg)
    w("r-nacos, every round (registrations/s): " + "; ".join(
        f"{label} " + ", ".join(fmt(r.get("per_s")) for r in rounds[key])
        for key, label in _SERIES if rounds[key]) + ". Push samples are the changes whose push arrived within 5 s (received of "
      "made).\n")
    return out


def plot(plt: Any, d: dict[str, Any], out_dir: Path, rn: dict[str, Any] | None = None) -> str | None:
    """Bars of the best round per series (registrations/s; server and client CPU per call), rounds as dots;
    r-nacos's series beside ours when its gRPC phase ran (``rn``: its details)."""
    reg = d.get("grpc", {}).get("register")
    if not reg:
        return None
    rounds = _rounds(reg)
    series = [(label, rounds[key]) for key, label in _SERIES if rounds[key]]
    rreg = (rn or {}).get("grpc", {}).get("register")
    if rreg:
        rrounds = _rounds(rreg)
        series = [(f"ours: {label}", runs) for label, runs in series]
        series += [(f"r-nacos: {label}", rrounds[key]) for key, label in _SERIES if rrounds[key]]
    if not series:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11 if rreg else 9, 4.2))
    xs = list(range(len(series)))
    colours = ["tab:grey" if "HTTP" in label else "tab:orange" if "grpcio" in label else "tab:blue"
               for label, _ in series]
    hatches = ["//" if label.startswith("r-nacos") else "" for label, _ in series]
    best = [max(r["per_s"] for r in runs) for _, runs in series]
    left.bar(xs, best, color=colours, hatch=hatches, alpha=0.8)
    for x, (_, runs) in zip(xs, series, strict=True):
        left.plot([x] * len(runs), [r["per_s"] for r in runs], "k.", markersize=6)
    labels = [label.replace(", ", "\n").replace(": ", ":\n") for label, _ in series]
    left.set_xticks(xs, labels, fontsize=7)
    left.set_ylabel("successful registrations per second")
    left.set_title("registrations/s (bar: best round; dots: rounds)", fontsize=9)
    server = [min(r["server_cpu_us_per_reg"] for r in runs) for _, runs in series]
    client = [min((r.get("client_cpu_us_per_call") or 0) for r in runs) for _, runs in series]
    right.bar(xs, server, label="server (three processes)", color="tab:green", hatch=hatches, alpha=0.8)
    right.bar(xs, client, bottom=server, label="load generator", color="tab:purple", alpha=0.6)
    right.set_xticks(xs, labels, fontsize=7)
    right.set_ylabel("CPU µs per registration (lowest round)")
    right.set_title("CPU per registration", fontsize=9)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(PLOT_TITLE, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_dir / PLOT, dpi=110)
    plt.close(fig)
    return PLOT


__all__ = ["PLOT", "PLOT_TITLE", "plot", "section"]
