"""Demo provider: the goods service. ``GET /goodsServiceTest`` answers JSON naming the instance that served it.

It serves HTTP with ``cluster.http.serve_http`` on trio and registers itself as ``goods-service`` through the
SDK (heartbeats included); on SIGTERM/SIGINT it deregisters and exits.

    python examples/goods_service.py --servers 127.0.0.1:8848,127.0.0.1:8849 --port 8081
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from functools import partial
from pathlib import Path

import trio

# Run from a checkout without installing: the server's packages and the SDK (client/distroreg).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "client"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.http import HttpLimits, Request, Response, serve_http
from distroreg import NamingClient, NamingError, local_ip_for

log = logging.getLogger("goods-service")

GOODS = [
    {"id": 1, "name": "apple", "price": 3.5},
    {"id": 2, "name": "pear", "price": 4.0},
    {"id": 3, "name": "plum", "price": 2.25},
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default=env("DISTRO_SERVERS", "127.0.0.1:8848"), help="registry nodes host:port,...")
    p.add_argument("--service", default=env("SERVICE_NAME", "goods-service"))
    p.add_argument("--host", default=env("HOST", "0.0.0.0"), help="address to listen on")
    p.add_argument("--port", type=int, default=int(env("PORT", "8081")), help="HTTP port (0: any free port)")
    p.add_argument("--advertise-ip", default=env("ADVERTISE_IP", ""),
                   help="IP to register (default: the local address that reaches the first server)")
    p.add_argument("--cache-dir", default=env("NAMING_CACHE_DIR") or None)
    return p.parse_args(argv)


async def register_until_done(naming: NamingClient, service: str, ip: str, port: int) -> None:
    """Register, retrying while the registry is not reachable yet (e.g. starting together with it)."""
    delay = 0.5
    while True:
        try:
            await naming.register_instance(service, ip=ip, port=port, metadata={"version": "1.0"})
            return
        except NamingError as exc:
            log.warning("registering %s %s:%d failed (%s); retrying in %.1f s", service, ip, port, exc, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def run(args: argparse.Namespace, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve and stay registered until cancelled; ``task_status.started(port)``."""
    identity: dict[str, str] = {}

    async def handler(request: Request) -> Response:
        if request.path == "/goodsServiceTest":
            return Response.json({"service": args.service, "instance": identity["instance"], "goods": GOODS})
        if request.path == "/healthz":
            return Response.text(200, "OK")
        if request.path == "/readyz":  # registered with the registry
            return Response.text(200 if "registered" in identity else 503, identity.get("registered", "no"))
        return Response.text(404, f"no such path: {request.path}")

    async with NamingClient(args.servers, cache_dir=args.cache_dir) as naming, trio.open_nursery() as nursery:
        port: int = await nursery.start(partial(serve_http, handler, args.host, args.port, HttpLimits()))
        ip = args.advertise_ip or await trio.to_thread.run_sync(local_ip_for, args.servers.split(",")[0])
        identity["instance"] = f"{ip}:{port}"
        await register_until_done(naming, args.service, ip, port)
        identity["registered"] = "yes"
        log.info("%s serving on %s:%d, registered as %s:%d", args.service, args.host, port, ip, port)
        task_status.started(port)


async def main_async(args: argparse.Namespace) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, args)
            async for _ in signals:
                log.info("stopping: deregistering")
                nursery.cancel_scope.cancel()
                break


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    trio.run(main_async, parse_args())


if __name__ == "__main__":
    main()
