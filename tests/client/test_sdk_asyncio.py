"""The same SDK under asyncio (a sync test that calls ``asyncio.run``: pytest-trio only runs async tests)."""

from __future__ import annotations

import asyncio

import httpx

from distroreg import LoadBalancedTransport, NamingClient
from tests.client.instances import thread_instances
from tests.client.support import NodeProcesses, unique

GUARD = 40


def test_sdk_under_asyncio(sdk_nodes: NodeProcesses) -> None:
    service = unique("asyncio-goods")

    async def scenario(ports: list[int]) -> None:
        async with NamingClient(sdk_nodes.addresses, push="udp", beat_interval=0.2) as naming:
            for port in ports:
                await naming.register_instance(service, ip="127.0.0.1", port=port)
            async with naming.subscribe(service) as changes:
                async for info in changes:
                    if {h.port for h in info.hosts} == set(ports):
                        break
                assert len(await naming.select_instances(service)) == 2
                while naming.stats.beats < 4:
                    await asyncio.sleep(0.01)
                async with httpx.AsyncClient(transport=LoadBalancedTransport(naming), trust_env=False) as lb:
                    seen = {(await lb.get(f"http://{service}/goodsServiceTest")).json()["port"] for _ in range(30)}
                assert seen == set(ports)
                # a change made by someone else arrives as a push
                async with httpx.AsyncClient(trust_env=False) as http:
                    response = await http.post(f"{sdk_nodes.urls[1]}/nacos/v1/ns/instance",
                                               params={"serviceName": service, "ip": "10.11.0.1", "port": "80"})
                    assert response.text == "ok"
                async for info in changes:
                    if "10.11.0.1" in {h.ip for h in info.hosts}:
                        break
                assert naming.stats.pushes_received >= 1
                await naming.deregister_instance(service, ip="127.0.0.1", port=ports[1])
                async for info in changes:
                    if ports[1] not in {h.port for h in info.hosts}:
                        break

    with thread_instances(2) as ports:
        asyncio.run(asyncio.wait_for(scenario(ports), GUARD))
