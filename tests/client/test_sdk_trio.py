"""The async SDK from trio against real nodes: register + heartbeats (and re-registration on 20404),
select, subscribe (UDP push, HTTP watch, auto fallback), load-balanced calls, server failover."""

from __future__ import annotations

import random

import httpx
import pytest
import trio

from distroreg import (
    Instance,
    LoadBalancedTransport,
    NamingClient,
    NoInstanceError,
    ServiceInfo,
    Subscription,
)
from tests.client.instances import closed_port, trio_instances
from tests.client.support import NodeProcesses, deregister, list_hosts, register, unique
from tests.polling import wait_for

GUARD = 40


async def next_matching(changes: Subscription, predicate: object) -> ServiceInfo:
    """The next snapshot for which ``predicate(info)`` holds."""
    assert callable(predicate)
    async for info in changes:
        if predicate(info):
            return info
    raise AssertionError("subscription ended")


def ports_of(info: ServiceInfo) -> set[int]:
    return {h.port for h in info.hosts}


async def test_register_beat_select_subscribe_and_balance(sdk_nodes: NodeProcesses) -> None:
    service = unique("goods")
    with trio.fail_after(GUARD):
        async with (
            trio_instances(2) as ports,
            NamingClient(sdk_nodes.addresses, push="udp", beat_interval=0.2) as naming,
            httpx.AsyncClient(trust_env=False) as http,
        ):
            for port in ports:
                await naming.register_instance(service, ip="127.0.0.1", port=port, weight=2.0, metadata={"v": "1"})
            async with naming.subscribe(service) as changes:
                info = await next_matching(changes, lambda i: ports_of(i) == set(ports))
                host = info.hosts[0]
                assert isinstance(host, Instance)
                assert (host.ip, host.weight, host.healthy, host.enabled, host.cluster) == (
                    "127.0.0.1", 2.0, True, True, "DEFAULT")
                assert dict(host.metadata) == {"v": "1"}
                assert {h.port for h in await naming.select_instances(service)} == set(ports)
                assert await naming.select_instances(service, healthy=False) == []
                assert len(await naming.get_all_instances(service)) == 2
                assert (await naming.select_one_healthy_instance(service)).port in ports

                # heartbeats keep both alive; the server-provided interval (200 ms) is used
                await wait_for(lambda: naming.stats.beats >= 6)
                for url in sdk_nodes.urls:
                    assert await list_hosts(http, url, service) == sorted(("127.0.0.1", p) for p in ports)

                # removed behind the SDK's back: the next beat gets 20404 and registers it again
                before = naming.stats.reregistrations
                await deregister(http, sdk_nodes.urls[2], service, "127.0.0.1", ports[0])
                await wait_for(lambda: naming.stats.reregistrations > before)
                await wait_for(lambda: _ports_listed(http, sdk_nodes.urls[0], service, set(ports)))

                # load-balanced calls by service name reach both instances, and skip a dead one
                async with httpx.AsyncClient(transport=LoadBalancedTransport(naming), trust_env=False) as lb:
                    seen = {(await lb.get(f"http://{service}/goodsServiceTest")).json()["port"] for _ in range(30)}
                    assert seen == set(ports)
                    dead = closed_port()
                    await register(http, sdk_nodes.urls[1], service, "127.0.0.1", dead, weight="50")
                    await next_matching(changes, lambda i: dead in ports_of(i))
                    for _ in range(10):
                        response = await lb.get(f"http://{service}/x")
                        assert response.status_code == 200 and response.json()["port"] in ports
                    await deregister(http, sdk_nodes.urls[1], service, "127.0.0.1", dead)
                    await next_matching(changes, lambda i: dead not in ports_of(i))

                await naming.deregister_instance(service, ip="127.0.0.1", port=ports[0])
                await next_matching(changes, lambda i: ports_of(i) == {ports[1]})
            assert naming.stats.pushes_received >= 1
            assert naming.stats.pushes_acked >= 1


async def _ports_listed(http: httpx.AsyncClient, url: str, service: str, ports: set[int]) -> bool:
    return {p for _, p in await list_hosts(http, url, service)} == ports


async def test_weight_zero_is_never_selected_and_empty_raises(sdk_nodes: NodeProcesses) -> None:
    service = unique("weights")
    with trio.fail_after(GUARD):
        async with NamingClient(sdk_nodes.addresses, push="poll", poll_interval=0.05) as naming:
            with pytest.raises(NoInstanceError):
                await naming.select_one_healthy_instance(service)
            await naming.register_instance(service, ip="10.9.0.1", port=1, weight=0.0)
            await naming.register_instance(service, ip="10.9.0.2", port=2, weight=1.0)
            await wait_for(lambda: _count(naming, service, 2))
            assert [h.ip for h in await naming.select_instances(service)] == ["10.9.0.2"]
            for _ in range(20):
                assert (await naming.select_one_healthy_instance(service)).ip == "10.9.0.2"


async def _count(naming: NamingClient, service: str, count: int) -> bool:
    return len(await naming.get_all_instances(service)) == count


async def test_watch_mode_gets_changes_without_udp(sdk_nodes: NodeProcesses) -> None:
    service = unique("watched")
    with trio.fail_after(GUARD):
        async with (
            NamingClient(sdk_nodes.addresses, push="watch") as naming,
            httpx.AsyncClient(trust_env=False) as http,
        ):
            assert naming.udp_address is None
            async with naming.subscribe(service) as changes:
                await register(http, sdk_nodes.urls[0], service, "10.9.1.1", 80)
                await next_matching(changes, lambda i: len(i.hosts) == 1)
                await register(http, sdk_nodes.urls[1], service, "10.9.1.2", 80)
                await next_matching(changes, lambda i: len(i.hosts) == 2)
            assert naming.stats.watches >= 1
            assert naming.stats.pushes_received == 0


async def test_auto_switches_to_watch_when_pushes_do_not_arrive(sdk_nodes: NodeProcesses) -> None:
    service = unique("auto")
    with trio.fail_after(GUARD):
        async with (
            # 192.0.2.1 is TEST-NET-1: the server's pushes go nowhere
            NamingClient(sdk_nodes.addresses, push="auto", client_ip="192.0.2.1", poll_interval=0.1) as naming,
            httpx.AsyncClient(trust_env=False) as http,
        ):
            await register(http, sdk_nodes.urls[0], service, "10.9.2.1", 80)
            async with naming.subscribe(service) as changes:
                await next_matching(changes, lambda i: len(i.hosts) == 1)
                for n in (2, 3):
                    await register(http, sdk_nodes.urls[0], service, f"10.9.2.{n}", 80)
                    await next_matching(changes, lambda i, n=n: len(i.hosts) == n)
                await wait_for(lambda: naming.mode == "watch")
                watches = naming.stats.watches
                await register(http, sdk_nodes.urls[0], service, "10.9.2.4", 80)
                await next_matching(changes, lambda i: len(i.hosts) == 4)
                assert naming.stats.watches > watches
            assert naming.stats.missed_pushes >= 2
            assert naming.stats.pushes_received == 0


async def test_fails_over_to_a_live_server(sdk_nodes: NodeProcesses) -> None:
    service = unique("failover")
    dead = f"127.0.0.1:{closed_port()}"
    seed = next(s for s in range(100) if random.Random(s).randrange(2) == 0)  # start at the dead server
    with trio.fail_after(GUARD):
        async with NamingClient([dead, sdk_nodes.addresses[0]], seed=seed, push="poll") as naming:
            await naming.register_instance(service, ip="10.9.3.1", port=80)
            assert naming.current_server == f"http://{sdk_nodes.addresses[0]}"
            await wait_for(lambda: _count(naming, service, 1))
