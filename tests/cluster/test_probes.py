"""Nacos's console probes: liveness is 200 ``OK`` at once; readiness is Nacos's 500 ``Naming is not in
readiness`` until the snapshot is loaded, then 200 ``OK``. Neither needs a token."""

from __future__ import annotations

from dataclasses import replace

import httpx
import trio

from cluster.api.probes import LIVENESS_PATH, NAMING_NOT_READY, READINESS_PATH
from cluster.http import serve_http
from cluster.node.settings import parse_settings
from cluster.node.wiring import NodeServer
from distro.config import DistroConfig


async def test_probes_follow_readiness_and_need_no_token() -> None:
    flags = parse_settings(["--port", "18850", "--auth", "--token-secret", "s" * 32, "--admin-password", "pw"])
    settings = replace(flags, core=DistroConfig(cluster_size=3, snapshot_timeout_ms=300))
    server = NodeServer(settings)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_http, server.api, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert not server.runtime.node.ready
            live = await http.get(LIVENESS_PATH)
            assert (live.status_code, live.text) == (200, "OK")
            ready = await http.get(READINESS_PATH)
            assert (ready.status_code, ready.text) == (500, NAMING_NOT_READY)
            await nursery.start(server.runtime.run)  # no peer answers: ready at the snapshot deadline
            with trio.fail_after(10):
                await server.runtime.ready_event.wait()
            ready = await http.get(READINESS_PATH)
            assert (ready.status_code, ready.text) == (200, "OK")
            guarded = await http.get("/nacos/v1/ns/instance/list", params={"serviceName": "a"})
            assert guarded.status_code == 403  # auth is on: the probes were open on purpose
        nursery.cancel_scope.cancel()
