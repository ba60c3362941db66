"""The blocking facade in plain synchronous code: register, select, subscribe, load-balanced httpx.Client."""

from __future__ import annotations

import time

import httpx

from distroreg import SyncLoadBalancedTransport, SyncNamingClient
from tests.client.instances import thread_instances
from tests.client.support import NodeProcesses, unique

GUARD = 30


def test_blocking_facade(sdk_nodes: NodeProcesses) -> None:
    service = unique("sync-goods")
    deadline = time.monotonic() + GUARD
    with thread_instances(2) as ports, SyncNamingClient(sdk_nodes.addresses, beat_interval=0.2) as naming:
        naming.register_instance(service, "127.0.0.1", ports[0])
        with naming.subscribe(service) as changes:
            while True:
                info = changes.next(timeout=max(0.0, deadline - time.monotonic()))
                assert info is not None, "no snapshot in time"
                if len(info.hosts) == 1:
                    break
            naming.register_instance(service, "127.0.0.1", ports[1], metadata={"zone": "b"})
            for info in changes:
                if len(info.hosts) == 2:
                    break
                assert time.monotonic() < deadline
            assert changes.next(timeout=0.05) is None  # nothing new
        hosts = naming.select_instances(service)
        assert {h.port for h in hosts} == set(ports)
        assert naming.select_one_healthy_instance(service).port in ports
        assert {h.port for h in naming.get_all_instances(service)} == set(ports)
        with httpx.Client(transport=naming.transport(), trust_env=False) as http:
            seen = {http.get(f"http://{service}/goodsServiceTest").json()["port"] for _ in range(30)}
        assert seen == set(ports)
        assert isinstance(naming.transport(), SyncLoadBalancedTransport)
        naming.deregister_instance(service, "127.0.0.1", ports[0])
        while {h.port for h in naming.get_all_instances(service)} != {ports[1]}:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    # closing deregistered the remaining instance (on every node, once replicated)
    with httpx.Client(trust_env=False) as http:
        for url in sdk_nodes.urls:
            while http.get(f"{url}/nacos/v1/ns/instance/list", params={"serviceName": service}).json()["hosts"]:
                assert time.monotonic() < deadline, "instance still listed after close"
                time.sleep(0.01)
