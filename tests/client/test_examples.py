"""The demo: two goods-service instances and a consumer that calls them by name through the SDK."""

from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path
from types import ModuleType

import httpx
import trio

from tests.client.support import NodeProcesses, unique
from tests.polling import wait_for

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
GUARD = 40


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_consumer_calls_goods_by_service_name(sdk_nodes: NodeProcesses) -> None:
    goods, consumer = load("goods_service"), load("consumer_service")
    servers = ",".join(sdk_nodes.addresses)
    goods_name = unique("goods-service")
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as http:
            goods_ports = []
            for _ in range(2):
                args = goods.parse_args(["--servers", servers, "--host", "127.0.0.1", "--port", "0",
                                         "--advertise-ip", "127.0.0.1", "--service", goods_name])
                goods_ports.append(await nursery.start(partial(goods.run, args)))
            args = consumer.parse_args(["--servers", servers, "--host", "127.0.0.1", "--port", "0",
                                        "--advertise-ip", "127.0.0.1", "--goods-service", goods_name,
                                        "--service", unique("consumer-service")])
            consumer_port = await nursery.start(partial(consumer.run, args))
            seen: set[str] = set()

            async def both_answered() -> bool:
                response = await http.get(f"http://127.0.0.1:{consumer_port}/consumerTest")
                if response.status_code == 200:
                    body = response.json()
                    assert body["goods"]["service"] == goods_name and body["goods"]["goods"]
                    seen.add(body["goods"]["instance"])
                return seen == {f"127.0.0.1:{p}" for p in goods_ports}

            await wait_for(both_answered, timeout_s=30)
            nursery.cancel_scope.cancel()


async def test_readme_quickstart_registers_calls_and_deregisters(sdk_nodes: NodeProcesses) -> None:
    """examples/quickstart.py, the README's first SDK program, against a real provider and real nodes."""
    import subprocess
    import sys

    provider = subprocess.Popen(
        [sys.executable, "-c", _PROVIDER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert provider.stdout is not None
        port = int(provider.stdout.readline())
        service = unique("quickstart")
        done = await trio.run_process(
            [sys.executable, str(EXAMPLES / "quickstart.py"), "--servers", ",".join(sdk_nodes.addresses),
             "--port", str(port), "--service", service, "--timeout-s", "20"],
            capture_stdout=True, capture_stderr=True, check=False,
        )
        out = done.stdout.decode()
        assert done.returncode == 0, out + done.stderr.decode()
        assert f"GET http://{service}/ -> 200 from 127.0.0.1:{port}" in out
        assert f"deregistered {service}" in out
    finally:
        provider.kill()
        provider.wait()


_PROVIDER = """
import http.server, sys
server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""
