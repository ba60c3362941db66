"""Demo consumer: ``GET /consumerTest`` calls ``http://goods-service/goodsServiceTest`` by service name.

The call goes through :class:`distroreg.LoadBalancedTransport`: the SDK picks a healthy goods-service
instance by weight from its cache (kept fresh by UDP push or the HTTP watch) and tries another one if the
connection fails. The consumer registers itself as ``consumer-service`` too.

    python examples/consumer_service.py --servers 127.0.0.1:8848 --port 8080
    curl http://127.0.0.1:8080/consumerTest

With ``--call-interval S`` (``CALL_INTERVAL_S``) it also calls the goods service by itself every S seconds
and logs which instance answered, so that its log shows the calls (the compose demo does this).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from functools import partial
from pathlib import Path

import httpx
import trio

# Run from a checkout without installing: the server's packages and the SDK (client/distroreg).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "client"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.http import HttpLimits, Request, Response, serve_http
from distroreg import LoadBalancedTransport, NamingClient, NamingError, local_ip_for

log = logging.getLogger("consumer-service")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default=env("DISTRO_SERVERS", "127.0.0.1:8848"), help="registry nodes host:port,...")
    p.add_argument("--service", default=env("SERVICE_NAME", "consumer-service"))
    p.add_argument("--goods-service", default=env("GOODS_SERVICE", "goods-service"))
    p.add_argument("--host", default=env("HOST", "0.0.0.0"), help="address to listen on")
    p.add_argument("--port", type=int, default=int(env("PORT", "8080")), help="HTTP port (0: any free port)")
    p.add_argument("--advertise-ip", default=env("ADVERTISE_IP", ""),
                   help="IP to register (default: the local address that reaches the first server)")
    p.add_argument("--push", default=env("NAMING_PUSH", "auto"), choices=["auto", "udp", "watch", "poll"])
    p.add_argument("--cache-dir", default=env("NAMING_CACHE_DIR") or None)
    p.add_argument("--call-interval", type=float, default=float(env("CALL_INTERVAL_S", "0")),
                   help="also call the goods service every this many seconds and log the answer (0: never)")
    return p.parse_args(argv)


async def call_periodically(http: httpx.AsyncClient, url: str, interval: float) -> None:
    """Call ``url`` every ``interval`` seconds and log which goods instance answered."""
    while True:
        await trio.sleep(interval)
        try:
            answer = await http.get(url)
            log.info("GET %s -> %d, served by %s", url, answer.status_code, answer.json().get("instance"))
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.warning("GET %s failed: %s", url, exc)


async def run(args: argparse.Namespace, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve and stay registered until cancelled; ``task_status.started(port)``."""
    identity: dict[str, str] = {}
    async with (
        NamingClient(args.servers, cache_dir=args.cache_dir, push=args.push) as naming,
        httpx.AsyncClient(transport=LoadBalancedTransport(naming), timeout=5.0, trust_env=False) as http,
    ):

        async def handler(request: Request) -> Response:
            if request.path == "/consumerTest":
                try:
                    answer = await http.get(f"http://{args.goods_service}/goodsServiceTest")
                except httpx.HTTPError as exc:
                    return Response.text(503, f"goods-service unavailable: {exc}")
                return Response.json({"consumer": identity["instance"], "status": answer.status_code,
                                      "goods": answer.json()})
            if request.path == "/healthz":
                return Response.text(200, "OK")
            if request.path == "/readyz":  # registered with the registry
                return Response.text(200 if "registered" in identity else 503, identity.get("registered", "no"))
            return Response.text(404, f"no such path: {request.path}")

        async with trio.open_nursery() as nursery:
            port: int = await nursery.start(partial(serve_http, handler, args.host, args.port, HttpLimits()))
            ip = args.advertise_ip or await trio.to_thread.run_sync(local_ip_for, args.servers.split(",")[0])
            identity["instance"] = f"{ip}:{port}"
            delay = 0.5
            while True:
                try:
                    await naming.register_instance(args.service, ip=ip, port=port)
                    identity["registered"] = "yes"
                    break
                except NamingError as exc:
                    log.warning("registering failed (%s); retrying in %.1f s", exc, delay)
                    await trio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            log.info("%s serving on %s:%d, registered as %s:%d", args.service, args.host, port, ip, port)
            if args.call_interval > 0:
                nursery.start_soon(call_periodically, http, f"http://{args.goods_service}/goodsServiceTest",
                                   args.call_interval)
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
