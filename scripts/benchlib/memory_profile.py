"""Where a node's memory per instance goes, measured in one process.

    scripts/bench --memory-profile N [-- --rss --json FILE --into RESULTS]

``scripts/bench``'s memory phase reads the nodes' resident memory before and after a load (the end-to-end
figure, ``bytes_per_instance``); this module says what that memory holds. It runs three
:class:`~distro.node.DistroNode` s in one process (:class:`~distro.testing.harness.Harness`), every peer
message round-tripped through msgpack and :mod:`distro.codec` as on the real peer link (so no node shares a
string with another), registers N instances into N / 100 services the way the HTTP API builds them (one
fresh request per instance, spread over the three nodes, forwarded to the owners), lets replication settle,
and then:

* walks one node's structures (:func:`attribute`), giving every object reachable from each structure to
  the first structure that reaches it (``sys.getsizeof``, objects counted once by identity), so shared
  objects (interned strings, one metadata mapping for many instances) are counted once;
* counts what tracemalloc saw allocated during the load, grouped by source line (the three nodes
  together, so divided by 3N); the walk's total should be close to a third of it, and what the walk
  misses shows up there.

Without tracemalloc the run also reports the process's resident memory growth per instance per node
(``--rss``, a separate run: tracemalloc's own bookkeeping would inflate it). With ``--into
docs/bench/results.json`` the breakdown is stored under ``details.distro.memory_profile`` for the report
(``benchlib.report_text``).
"""

from __future__ import annotations

import argparse
import gc
import json
import linecache
import sys
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgpack

from distro.codec import decode_message, encode_message
from distro.config import DistroConfig
from distro.model import Instance, make_instance, service_key
from distro.node import DistroNode
from distro.requests import Register
from distro.testing.harness import Harness, Wire

HOUR_MS = 3_600_000


class CodecHarness(Harness):
    """A :class:`Harness` whose messages cross a msgpack round trip, as on the peer link."""

    def _deliver(self, w: Wire) -> None:
        wire = msgpack.packb(encode_message(w.message), use_bin_type=True)
        message = decode_message(msgpack.unpackb(wire, raw=False, strict_map_key=True))
        super()._deliver(Wire(w.source, w.target, message))

    def collect(self, node_id: str) -> list:  # type: ignore[type-arg]
        """As :meth:`Harness.collect`, but what the test would read is not kept (it is not the node's memory)."""
        effects = super().collect(node_id)
        out = self.outputs.get(node_id)
        if out is not None:
            out.replies.clear()
            out.changes.clear()
            out.events.clear()
            out.settings.clear()
        return effects


def _instance_of(g: int, prefix: str, services: int) -> tuple[str, str, int]:
    """The load generator's instance ``g`` (``benchlib.loadgen.instance_of``) without importing trio."""
    svc = f"{prefix}-{g % services}"
    ip = f"10.{(g >> 16) & 255}.{(g >> 8) & 255}.{g & 255}"
    return svc, ip, 8000 + (g // (1 << 24))


def load_cluster(n: int, services: int, batch: int = 500) -> CodecHarness:
    """Three nodes holding ``n`` instances in ``services`` services, replication settled."""
    config = DistroConfig(cluster_size=3, heartbeat_timeout_ms=HOUR_MS, instance_expire_ms=HOUR_MS)
    h = CodecHarness(config=config)
    h.start()
    nodes = h.node_ids
    for start in range(0, n, batch):
        for g in range(start, min(n, start + batch)):
            svc, ip, port = _instance_of(g, "mem", services)
            # fresh strings per request, as the HTTP parser makes them
            key = service_key(None, None, "".join(svc))
            h.client(nodes[g % 3], Register(key, make_instance("".join(ip), port)))
            if g % 3 == 2:
                h.now_ms += 1  # about the cluster's registration rate: versions rarely share a millisecond
        h.advance(50)
    h.advance(2_000)
    return h


# ------------------------------------------------------------------------------------------------
# The walk
# ------------------------------------------------------------------------------------------------
class Walk:
    """Deep sizes with objects counted once: the first structure that reaches an object owns it."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.parts: dict[str, int] = {}

    def add(self, part: str, *objs: Any) -> None:
        """Count ``objs`` (not what they contain) under ``part`` unless seen already."""
        total = 0
        for obj in objs:
            if id(obj) in self.seen or obj is None or type(obj) is bool:
                continue
            self.seen.add(id(obj))
            total += sys.getsizeof(obj)
        self.parts[part] = self.parts.get(part, 0) + total

    def deep(self, part: str, obj: Any) -> None:
        """Count ``obj`` and everything it contains (containers, slots, mappings) under ``part``."""
        stack = [obj]
        total = 0
        seen = self.seen
        while stack:
            o = stack.pop()
            if o is None or type(o) is bool or id(o) in seen or isinstance(o, type):
                continue
            seen.add(id(o))
            total += sys.getsizeof(o)
            stack.extend(_children(o))
        self.parts[part] = self.parts.get(part, 0) + total


def _children(o: Any) -> Iterable[Any]:
    if isinstance(o, dict):
        return [*o.keys(), *o.values()]
    if isinstance(o, list | tuple | set | frozenset):
        return o
    if isinstance(o, str | bytes | int | float):
        return ()
    slots = [s for cls in type(o).__mro__ for s in getattr(cls, "__slots__", ())]
    out = [getattr(o, s, None) for s in slots if s != "__weakref__"]
    if hasattr(o, "__dict__"):
        out.append(vars(o))
    return out


def attribute(node: DistroNode) -> dict[str, int]:
    """Bytes held by one node, by structure (instance entries first, then what refers to them)."""
    w = Walk()
    store = node.store
    for _key, datum in store._datums.items():
        w.add("datum dicts (per-service entry maps)", datum)
        for entry_id, entry in datum.items():
            w.add("entry-id strings (datum keys)", entry_id)
            w.add("Entry objects", entry)
            for part in _version_parts(entry, w):
                w.add("Version parts (ints, node id)", part)
            value = entry.value
            if isinstance(value, Instance):
                w.add("Instance objects", value)
                for name, part in _stored_fields(value):  # what it stores (not what it computes on reading)
                    w.deep(INSTANCE_PARTS.get(name, f"instance {name}"), part)
            else:
                w.deep("cluster data values", value)
    w.deep("store indexes (digests, counts, floors)", [
        store._digests, store._live_by_key, store._no_instances, store._floors,
        store._entry_floors, store._tomb_ids,
    ])
    w.deep("service keys", list(store._datums))
    w.deep("heartbeat clocks (owner)", node._health)
    w.deep("read views (notifier)", node._notifier)
    w.deep("replication (dirty sets, sorted keys)", node._replication)
    w.deep("rest of the node", node)
    return w.parts


INSTANCE_PARTS = {
    "entry_id": "entry-id strings (datum keys)",
    "ip": "ip strings",
    "cluster": "cluster names",
    "port": "ports, weights",
    "weight": "ports, weights",
    "metadata": "metadata mappings",
    "connection": "connection / assigned id",
    "assigned_id": "connection / assigned id",
    "_digest": "checksum digests",
}


def _stored_fields(obj: Any) -> list[tuple[str, Any]]:
    slots = [s for cls in type(obj).__mro__ for s in getattr(cls, "__slots__", ())]
    return [(s, getattr(obj, s, None)) for s in slots if s != "__weakref__"]


def _version_parts(entry: Any, w: Walk) -> Iterable[Any]:
    """The objects an entry's version is made of (the entry holds them, or a separate version object)."""
    if hasattr(entry, "ms"):
        return (entry.ms, entry.counter, entry.node)
    version = entry.version  # a version object the entry holds (the entry was a pair before)
    w.add("Version objects", version)
    return tuple(version)


# ------------------------------------------------------------------------------------------------
# Runs
# ------------------------------------------------------------------------------------------------
def traced_run(n: int, services: int, top: int) -> dict[str, Any]:
    """Load with tracemalloc on; the walk of node n1 and the allocations by line."""
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    t0 = time.perf_counter()
    h = load_cluster(n, services)
    load_s = time.perf_counter() - t0
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    filters = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    stats = after.filter_traces(filters).compare_to(before.filter_traces(filters), "lineno")
    traced = sum(s.size_diff for s in stats)
    lines = [
        {"where": f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}",
         "code": linecache.getline(s.traceback[0].filename, s.traceback[0].lineno).strip()[:70],
         "bytes_per_instance_per_node": round(s.size_diff / (3 * n), 1), "blocks": s.count_diff}
        for s in sorted(stats, key=lambda s: -s.size_diff)[:top]
    ]
    per_node = [attribute(h[node_id]) for node_id in h.node_ids]
    walk = {part: round(sum(p.get(part, 0) for p in per_node) / (3 * n), 1) for part in per_node[0]}
    return {
        "instances": n, "services": services, "load_s": round(load_s, 1),
        "traced_bytes_per_instance_per_node": round(traced / (3 * n), 1),
        "walk_bytes_per_instance_per_node": walk,
        "walk_total": round(sum(walk.values()), 1),
        "by_line": lines,
    }


def rss_run(n: int, services: int) -> dict[str, Any]:
    """Load without tracemalloc: the process's resident memory growth per instance per node."""
    gc.collect()
    rss0 = _rss()
    h = load_cluster(n, services)
    gc.collect()
    rss1 = _rss()
    assert all(h[i].store.statistics().live_instances == n for i in h.node_ids)
    return {"instances": n, "rss_bytes_per_instance_per_node": round((rss1 - rss0) / (3 * n), 1)}


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _short(filename: str) -> str:
    for marker in ("/distro/", "/cluster/", "/scripts/", "/site-packages/", "/lib/python"):
        if marker in filename:
            return filename[filename.index(marker) + 1:]
    return filename


def show(result: dict[str, Any]) -> str:
    """The breakdown as text."""
    out = [f"{result['instances']:,} instances in {result['services']:,} services, three nodes in one process "
           f"(loaded in {result['load_s']} s)", "", "bytes per instance per node, by structure (the walk):"]
    for part, b in sorted(result["walk_bytes_per_instance_per_node"].items(), key=lambda kv: -kv[1]):
        if b >= 0.5:
            out.append(f"  {b:7.1f}  {part}")
    out.append(f"  {result['walk_total']:7.1f}  total walked")
    out.append(f"  {result['traced_bytes_per_instance_per_node']:7.1f}  allocated during the load (tracemalloc)")
    out += ["", "allocations by source line (bytes per instance per node):"]
    out += [f"  {x['bytes_per_instance_per_node']:7.1f}  {x['where']:<36} {x.get('code', '')}" for x in result["by_line"]]
    if "rss_bytes_per_instance_per_node" in result:
        out += ["", f"resident memory growth without tracemalloc: {result['rss_bytes_per_instance_per_node']} B "
                    "per instance per node"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench --memory-profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=100_000)
    ap.add_argument("--top", type=int, default=15, help="source lines to show")
    ap.add_argument("--rss", action="store_true", help="also a run without tracemalloc (resident memory)")
    ap.add_argument("--json", type=Path, help="write the breakdown here")
    ap.add_argument("--into", type=Path, help="store it in a scripts/bench results file (details.distro)")
    args = ap.parse_args(argv)
    services = max(1, args.instances // 100)
    rss = rss_run(args.instances, services) if args.rss else {}  # first: a fresh heap, no tracemalloc
    gc.collect()
    result = {**traced_run(args.instances, services, args.top), **rss}
    print(show(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.into:
        saved = json.loads(args.into.read_text())
        saved.setdefault("details", {}).setdefault("distro", {})["memory_profile"] = result
        args.into.write_text(json.dumps(saved, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
