"""How fast the web console shows a big registry (issue 13): scripts/console_bench.

Starts three local ``distro-node`` processes (the project's launcher), registers ``--services`` services with
``--instances`` instances in all (pipelined raw HTTP, spread over the nodes; long heartbeat timeouts, so nothing
expires while the figures are taken), then opens the console's services page in headless Chromium (Debian's
``chromium`` + ``chromedriver``, driven by selenium) ``--loads`` times and reports, per load:

* ``first_page_ms``: from the start of navigation to the moment the first page of services is in the document
  (the console's ``console:services-first-page`` performance mark, set right after it renders the rows);
* ``catalog_ms``: the ``catalog/services`` request as the browser timed it.

The first load is cold (no cached files); the others revalidate the files (304s). It also times
``catalog/services`` with an HTTP client (first page, a search, the last page). Prints a table, and writes JSON
with ``--json``. A figure, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from benchlib.httpraw import build_request, open_conn, split_addr
from cluster.tools.launcher import free_ports
from cluster.tools.localcluster import LocalCluster

NODE_ARGS = ("--heartbeat-timeout-ms", "3600000", "--instance-expire-ms", "7200000", "--max-services", "200000")
CATALOG = "/nacos/v1/ns/catalog/services"
PIPELINE = 64
CONNECTIONS_PER_NODE = 8


def service_name(index: int) -> str:
    return f"bench-svc-{index:05d}"


async def _load_one_node(address: str, requests: list[bytes]) -> int:
    conn = await open_conn(*split_addr(address))
    failures = 0
    try:
        for start in range(0, len(requests), PIPELINE):
            batch = requests[start : start + PIPELINE]
            await conn.send_all(b"".join(batch))
            for status, body in await conn.responses(len(batch)):
                failures += status != 200 or body != b"ok"
    finally:
        conn.close()
    return failures


async def register_all(addresses: list[str], services: int, instances: int) -> int:
    """Register ``instances`` instances over ``services`` services, spread over the nodes and
    ``CONNECTIONS_PER_NODE`` connections to each (a node answers one connection's requests in order, and a
    write it forwards to the owner waits for the answer); the number of failed registrations."""
    lanes = len(addresses) * CONNECTIONS_PER_NODE
    per_lane: list[list[bytes]] = [[] for _ in range(lanes)]
    for i in range(instances):
        service = service_name(i % services)
        ip = f"10.{(i // 65536) % 256}.{(i // 256) % 256}.{i % 256}"
        target = f"/nacos/v1/ns/instance?serviceName={service}&ip={ip}&port={8000 + i % 1000}"
        lane = i % lanes
        per_lane[lane].append(build_request("POST", target, addresses[lane % len(addresses)]))
    failures = [0] * lanes

    async def run(lane: int) -> None:
        failures[lane] = await _load_one_node(addresses[lane % len(addresses)], per_lane[lane])

    async with trio.open_nursery() as nursery:
        for lane in range(lanes):
            nursery.start_soon(run, lane)
    return sum(failures)


def wait_for_counts(addresses: list[str], services: int, instances: int, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(trust_env=False, timeout=30) as http:
        for address in addresses:
            while True:
                answer = http.get(f"http://{address}/nacos/v1/ns/operator/metrics").json()
                if answer["serviceCount"] >= services and answer["instanceCount"] >= instances:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"{address} holds {answer['serviceCount']} services, {answer['instanceCount']} "
                                     f"instances after {timeout_s:.0f} s")
                time.sleep(0.5)


def api_timings(address: str, services: int, repeats: int = 20) -> dict[str, float]:
    """Median milliseconds of catalog/services calls, as an HTTP client sees them."""
    cases: dict[str, dict[str, str | int]] = {
        "api_first_page_ms": {"pageNo": 1, "pageSize": 20},
        "api_search_ms": {"pageNo": 1, "pageSize": 20, "serviceNameParam": "svc-0999"},
        "api_last_page_ms": {"pageNo": max(1, services // 20), "pageSize": 20},
    }
    out: dict[str, float] = {}
    with httpx.Client(trust_env=False, timeout=30) as http:
        for name, params in cases.items():
            samples = []
            for _ in range(repeats):
                started = time.perf_counter()
                answer = http.get(f"http://{address}{CATALOG}", params=params)
                samples.append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
            out[name] = round(statistics.median(samples), 1)
    return out


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        raise SystemExit("needs Debian's chromium and chromium-driver (scripts/test installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,860"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


MEASURE_JS = """
const mark = performance.getEntriesByName('console:services-first-page')[0];
if (!mark) return null;
const catalog = performance.getEntriesByType('resource').find((e) => e.name.includes('catalog/services'));
return {first_page_ms: mark.startTime, catalog_ms: catalog ? catalog.duration : null,
        rows: document.querySelectorAll('#services-table tbody tr').length,
        info: (document.getElementById('page-info') || {}).textContent || ''};
"""


def browser_timings(url: str, loads: int) -> list[dict[str, Any]]:
    driver = _browser()
    results = []
    try:
        for _ in range(loads):
            driver.get("about:blank")
            driver.get(url)
            deadline = time.monotonic() + 30
            while (measured := driver.execute_script(MEASURE_JS)) is None:
                if time.monotonic() > deadline:
                    raise SystemExit("the services page did not render within 30 s")
                time.sleep(0.02)
            results.append({k: round(v, 1) if isinstance(v, float) else v for k, v in measured.items()})
    finally:
        driver.quit()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--loads", type=int, default=5, help="page loads in the browser (the first is cold)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp/console-bench"))
    args = parser.parse_args(argv)

    cluster = LocalCluster(free_ports(3), node_args=NODE_ARGS, log_dir=args.log_dir, die_with_parent=True,
                           hermetic_env=True)
    cluster.start_with_retries(60)
    try:
        addresses = cluster.addresses
        started = time.perf_counter()
        failures = trio.run(register_all, addresses, args.services, args.instances)
        wait_for_counts(addresses, args.services, args.instances)
        load_s = time.perf_counter() - started
        print(f"registered {args.instances} instances in {args.services} services in {load_s:.1f} s "
              f"({failures} failed)", file=sys.stderr)
        api = api_timings(addresses[0], args.services)
        loads = browser_timings(f"http://{addresses[0]}/nacos/", args.loads)
    finally:
        cluster.stop()
    warm = [load["first_page_ms"] for load in loads[1:]] or [loads[0]["first_page_ms"]]
    report = {
        "services": args.services, "instances": args.instances, "register_failures": failures,
        "cold_first_page_ms": loads[0]["first_page_ms"], "warm_first_page_ms_median": round(statistics.median(warm), 1),
        "warm_first_page_ms_max": max(warm), **api, "loads": loads,
    }
    print(f"{'load':>4} {'first page ms':>14} {'catalog ms':>11} {'rows':>5}  page info")
    for number, load in enumerate(loads, start=1):
        print(f"{number:>4} {load['first_page_ms']:>14} {load['catalog_ms']!s:>11} {load['rows']:>5}  {load['info']}")
    print(json.dumps({k: v for k, v in report.items() if k != "loads"}))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
