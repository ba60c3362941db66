"""The list phase's services, the same for every system: ``list_services`` services (prefix ``list``) of
exactly ``list_instances`` instances each (the mode's sizes), registered for the list phase alone.

The list phase used to list whatever the registration sweep had left behind, so each system listed services
of its own size (a faster system filled bigger services, and a bigger body is slower to list). Now both
register this set, wait until every node lists exactly that many instances in every one of its services,
and run the ``distro-list`` closed loop over it; the result carries the size, so the report can state it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from benchlib.procs import http_get, log
from benchlib.runner import Profiler, closed_run, run_loadgen

PREFIX = "list"
NS = "/nacos/v1/ns"


def listed_sizes(addrs: list[str], services: int) -> list[int]:
    """How many instances each node lists in each service of the set (node by node, service by service);
    -1 where a node did not answer."""
    sizes = []
    for addr in addrs:
        for k in range(services):
            status, body = http_get(f"http://{addr}{NS}/instance/list?serviceName={PREFIX}-{k}", 5.0)
            sizes.append(len(json.loads(body).get("hosts", [])) if status == 200 else -1)
    return sizes


def register_set(m: dict[str, Any], addrs: list[str], timeout_s: float = 60.0) -> dict[str, Any]:
    """Register the set until every node lists exactly ``list_instances`` in each of its services (up to three
    times, for registrations that failed: registering an instance again is harmless); RuntimeError when they
    still do not after ``timeout_s``."""
    services, per = m["list_services"], m["list_instances"]
    t0 = time.perf_counter()
    deadline = t0 + timeout_s
    sizes: list[int] = []
    for attempt in range(1, 4):
        r = run_loadgen(["--workload", "distro-register", "--targets", ",".join(addrs), "--connections", "48",
                         "--count", str(services * per), "--services", str(services), "--prefix", PREFIX,
                         "--base", "0"])
        sizes = listed_sizes(addrs, services)
        while min(sizes) < per and time.perf_counter() < deadline:
            time.sleep(0.2)
            sizes = listed_sizes(addrs, services)
        if min(sizes) == max(sizes) == per:
            return {"services": services, "instances_per_service": per, "registrations": attempt,
                    "settled_s": round(time.perf_counter() - t0, 1)}
        log(f"  list set: nodes list {min(sizes)}-{max(sizes)} per service ({r['failed']} registrations failed)")
    raise RuntimeError(f"list set: every node should list {per} instances in each of {services} services; they "
                       f"list {min(sizes)} to {max(sizes)}")


def list_phase(m: dict[str, Any], addrs: list[str], pids: list[int], label: str,
               profile: tuple[Profiler, str] | None = None) -> dict[str, Any]:
    """Register the set, then list it closed loop for the mode's ``reg_s``; the run's figures with the size."""
    log(f"{label}: instance/list/s (closed loop) over {m['list_services']} services of exactly "
        f"{m['list_instances']} instances each, registered for it")
    size = register_set(m, addrs)
    run = closed_run(m, "distro-list", addrs, pids, ["--services", str(m["list_services"]), "--prefix", PREFIX],
                     profile=profile)
    return {**run, **size}


__all__ = ["PREFIX", "list_phase", "listed_sizes", "register_set"]
