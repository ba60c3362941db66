"""The disk cache: with every server stopped, the client answers from memory, and a fresh client with the
same ``cache_dir`` answers from disk; an empty list does not wipe out known instances."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import trio

from distroreg import DiskCache, NamingClient, NamingUnavailable, ServiceInfo, Subscription
from tests.client.support import NodeProcesses, deregister, register, unique
from tests.polling import wait_for

GUARD = 40


async def next_matching(changes: Subscription, predicate: object) -> ServiceInfo:
    assert callable(predicate)
    async for info in changes:
        if predicate(info):
            return info
    raise AssertionError("subscription ended")


async def test_every_server_stopped_disk_cache_answers(tmp_path: Path) -> None:
    service = unique("cached")
    with NodeProcesses(2) as nodes, trio.fail_after(GUARD):
        async with NamingClient(nodes.addresses, cache_dir=str(tmp_path), push="udp") as naming:
            async with httpx.AsyncClient(trust_env=False) as http:
                await register(http, nodes.urls[0], service, "10.8.0.1", 80, metadata='{"k":"v"}')
                await register(http, nodes.urls[1], service, "10.8.0.2", 80)
            async with naming.subscribe(service) as changes:
                await next_matching(changes, lambda i: len(i.hosts) == 2)
            await naming.flush_disk_cache()
            path = DiskCache(tmp_path, "public").path_for(f"DEFAULT_GROUP@@{service}", "")
            assert path.name == f"DEFAULT_GROUP%40%40{service}.json"
            stored = json.loads(path.read_text())
            assert sorted(h["ip"] for h in stored["hosts"]) == ["10.8.0.1", "10.8.0.2"]
            assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]

            nodes.stop()
            # the running client keeps answering from memory
            assert len(await naming.select_instances(service)) == 2

        # a client that has just started, with no server up, answers from disk
        async with NamingClient(nodes.addresses, cache_dir=str(tmp_path), push="poll") as fresh:
            info = await fresh.get_service_info(service)
            assert info.from_disk
            hosts = await fresh.select_instances(service)
            assert sorted(h.ip for h in hosts) == ["10.8.0.1", "10.8.0.2"]
            assert next(h for h in hosts if h.ip == "10.8.0.1").metadata == {"k": "v"}
            with pytest.raises(NamingUnavailable):
                await fresh.get_service_info(unique("never-seen"))

        # without a disk copy there is nothing to answer with
        async with NamingClient(nodes.addresses, push="poll") as bare:
            with pytest.raises(NamingUnavailable):
                await bare.select_instances(service)


async def test_cached_client_recovers_when_servers_come_back(tmp_path: Path) -> None:
    service = unique("recover")
    with NodeProcesses(1) as nodes, trio.fail_after(GUARD):
        async with httpx.AsyncClient(trust_env=False) as http:
            await register(http, nodes.urls[0], service, "10.8.1.1", 80)
            async with NamingClient(nodes.addresses, cache_dir=str(tmp_path), push="poll") as naming:
                assert len(await naming.select_instances(service)) == 1
                await naming.flush_disk_cache()
            nodes.stop()
            async with NamingClient(nodes.addresses, cache_dir=str(tmp_path), push="watch",
                                    max_poll_interval=0.5) as naming, naming.subscribe(service) as changes:
                first = await changes.__anext__()
                assert first.from_disk and len(first.hosts) == 1
                nodes.start_node(0)  # comes back empty (memory only); the SDK keeps its copy...
                await register(http, nodes.urls[0], service, "10.8.1.2", 80)
                info = await next_matching(changes, lambda i: not i.from_disk)
                assert [h.ip for h in info.hosts] == ["10.8.1.2"]


async def test_empty_list_is_ignored_when_we_had_hosts(tmp_path: Path) -> None:
    service = unique("empty")
    with NodeProcesses(1) as nodes, trio.fail_after(GUARD):
        async with (
            httpx.AsyncClient(trust_env=False) as http,
            NamingClient(nodes.addresses, push="udp") as guarded,
            NamingClient(nodes.addresses, push="udp", ignore_empty_push=False) as plain,
        ):
            await register(http, nodes.urls[0], service, "10.8.2.1", 80)
            async with guarded.subscribe(service) as g_changes, plain.subscribe(service) as p_changes:
                await next_matching(g_changes, lambda i: len(i.hosts) == 1)
                await next_matching(p_changes, lambda i: len(i.hosts) == 1)
                await deregister(http, nodes.urls[0], service, "10.8.2.1", 80)
                await next_matching(p_changes, lambda i: len(i.hosts) == 0)
                await wait_for(lambda: guarded.stats.ignored_empty >= 1)
                assert [h.ip for h in await guarded.get_all_instances(service)] == ["10.8.2.1"]
                await register(http, nodes.urls[0], service, "10.8.2.2", 80)
                info = await next_matching(g_changes, lambda i: [h.ip for h in i.hosts] == ["10.8.2.2"])
                assert not info.from_disk
