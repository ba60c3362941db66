"""The README's first SDK program: register a provider, call it by service name, follow its changes.

Start a provider in one terminal (any HTTP server will do; this one serves the current folder):

    python3 -m http.server 9000 --bind 127.0.0.1

then, with a registry running (``distroctl local-cluster`` or ``scripts/cluster up``):

    python3 examples/quickstart.py [--servers 127.0.0.1:8848,127.0.0.1:8849] [--port 9000]

It registers ``quickstart-web`` at 127.0.0.1:<port>, calls ``http://quickstart-web/`` through the SDK's
load-balancing transport, prints the first service snapshot a subscription delivers, deregisters and exits.
Needs only the SDK (``pip install ./client``); runs on asyncio, so trio need not be installed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import httpx

try:
    from distroreg import LoadBalancedTransport, NamingClient
except ImportError:  # run from a checkout without the SDK installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "client"))
    from distroreg import LoadBalancedTransport, NamingClient

SERVICE = "quickstart-web"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="127.0.0.1:8848,127.0.0.1:8849,127.0.0.1:8850")
    parser.add_argument("--ip", default="127.0.0.1", help="the provider's address to register")
    parser.add_argument("--port", type=int, default=9000, help="the provider's port to register")
    parser.add_argument("--service", default=SERVICE)
    parser.add_argument("--timeout-s", type=float, default=10.0, help="give up waiting after this long")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    async with NamingClient(servers, push="watch") as naming:
        await naming.register_instance(args.service, ip=args.ip, port=args.port, metadata={"from": "quickstart"})
        print(f"registered {args.service} -> {args.ip}:{args.port}")
        async with asyncio.timeout(args.timeout_s):
            async with naming.subscribe(args.service) as changes:
                async for info in changes:  # the current snapshot first, then one per change
                    hosts = [f"{h.ip}:{h.port} healthy={h.healthy}" for h in info.hosts]
                    print(f"subscription: {args.service} has {hosts}")
                    if hosts:
                        break
            async with httpx.AsyncClient(transport=LoadBalancedTransport(naming)) as http:
                response = await http.get(f"http://{args.service}/")
                print(f"GET http://{args.service}/ -> {response.status_code} from {response.url.host}:{response.url.port}")
        await naming.deregister_instance(args.service, ip=args.ip, port=args.port)
        print(f"deregistered {args.service}")
    return 0


def main() -> None:
    sys.exit(asyncio.run(run(parse_args())))


if __name__ == "__main__":
    main()
