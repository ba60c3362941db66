"""Benchmark cluster.http on a trivial handler with wrk (see docs/http-server.md).

    scripts/bench_http [--duration 10s] [--connections 50] [--server-cpu 0] [--client-cpu 1]
    scripts/bench_http --node [--instances 10]     # a real distro-node serving a real service list

Starts the server (a handler returning {"hosts":[]}) in a subprocess pinned with ``taskset -c <server-cpu>``,
then runs ``taskset -c <client-cpu> wrk -t1 -c<connections> -d<duration>`` against
/nacos/v1/ns/instance/list twice: keep-alive, and with ``-H "Connection: close"``; prints the req/s and
the server's CPU time per request (from /proc; a figure that other load on the machine disturbs less).
Run it with the interpreter of a virtualenv that has trio (e.g. ``.venv/bin/python scripts/bench_http``).
``--serve PORT`` runs only the server (used internally). Needs wrk and taskset (util-linux).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from cluster.tools.launcher import free_ports

SCRIPTS = Path(__file__).resolve().parents[1]
ROOT = SCRIPTS.parent
WRAPPER = SCRIPTS / "bench_http"


def serve(port: int) -> None:
    """Run the benchmark server in this process."""
    import trio

    from cluster.http import Request, Response, serve_http

    body = b'{"hosts":[]}'

    async def handler(request: Request) -> Response:
        return Response(200, body)

    trio.run(serve_http, handler, "127.0.0.1", port)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (outside the ephemeral range: :func:`cluster.tools.launcher.free_ports`)."""
    (port,) = free_ports(1, offsets=())
    return port


def wait_listening(port: int, timeout: float = 10.0) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(cmd: list[str], server_pid: int) -> tuple[float, float, str]:
    """Run wrk; return (requests per second, server CPU microseconds per request, wrk's output)."""
    print("$ " + " ".join(f"'{c}'" if " " in c else c for c in cmd), flush=True)
    cpu_before = cpu_seconds(server_pid)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    cpu = cpu_seconds(server_pid) - cpu_before
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    per_request = cpu / int(total.group(1)) * 1e6 if total and int(total.group(1)) else 0.0
    return (float(rps.group(1)) if rps else 0.0), per_request, out


def register(port: int, instances: int) -> None:
    """Register ``instances`` instances of service ``bench`` on the node (heartbeat timeouts of an hour)."""
    metadata = urllib.parse.quote('{"preserved.heart.beat.timeout":"3600000","preserved.ip.delete.timeout":"3600000"}')
    for i in range(instances):
        url = (f"http://127.0.0.1:{port}/nacos/v1/ns/instance?serviceName=bench&ip=10.0.{i // 250}.{i % 250}"
               f"&port=8080&metadata={metadata}")
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5) as response:
            assert response.read() == b"ok"
    list_url = f"http://127.0.0.1:{port}/nacos/v1/ns/instance/list?serviceName=bench&healthyOnly=false"
    with urllib.request.urlopen(list_url, timeout=5) as response:
        size = len(response.read())
    print(f"registered {instances} instances of bench; instance/list answers {size} bytes", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and run the benchmark (or the server with --serve)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--node", action="store_true",
                    help="benchmark a real one-node distro-node (instance/list of a registered service)")
    ap.add_argument("--instances", type=int, default=10, help="instances registered in the service (--node)")
    args = ap.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found (apt-get install -y wrk util-linux)")
    port = free_port()
    if args.node:
        command = [sys.executable, "-c", "from cluster.node.main import main; main()",
                   "--node-id", "bench", "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING",
                   "--data-dir", tempfile.mkdtemp(prefix="distro-httpbench-")]
    else:
        command = [sys.executable, str(WRAPPER), "--serve", str(port)]
    server = subprocess.Popen(["taskset", "-c", args.server_cpu, *command], cwd=ROOT)
    try:
        wait_listening(port)
        if args.node:
            register(port, args.instances)
        url = f"http://127.0.0.1:{port}/nacos/v1/ns/instance/list?serviceName=bench&healthyOnly=false"
        wrk = ["taskset", "-c", args.client_cpu, "wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}"]
        results = []
        for label, extra in (("keep-alive", []), ("Connection: close", ["-H", "Connection: close"])):
            rps, per_request, out = run_wrk([*wrk, *extra, url], server.pid)
            print(out, flush=True)
            results.append((label, rps, per_request))
        print(
            f"python {sys.version.split()[0]}, server on cpu {args.server_cpu}, wrk on cpu {args.client_cpu}"
        )
        for label, rps, per_request in results:
            print(f"{label:>18}: {rps:10.0f} req/s   server CPU {per_request:6.1f} us/request")
    finally:
        server.terminate()
        server.wait()
