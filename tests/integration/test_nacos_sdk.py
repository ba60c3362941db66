"""nacos-sdk-python 0.1.17 (``import nacos``, HTTP v1, synchronous) against a real three-node cluster."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import RunningCluster, unique, wait_until

nacos = pytest.importorskip("nacos")

pytestmark = pytest.mark.slow


@pytest.fixture
def client(cluster: RunningCluster) -> Iterator[Any]:
    logging.getLogger("nacos").setLevel(logging.WARNING)
    # The client talks to the first address unless it fails; n1 first, so n2 and n3 only replicate.
    sdk = nacos.NacosClient(",".join(cluster.addresses))
    yield sdk


def test_sdk_register_list_beat_get_modify_remove(cluster: RunningCluster, client: Any) -> None:
    service, ip, port = unique("sdk"), "10.7.0.1", 8080

    # Register: the client sends clusterName=None literally; the server treats it as DEFAULT.
    assert client.add_naming_instance(service, ip, port, metadata={"zone": "a"}) is True
    # (n1 took the write; unless it owns the service it forwarded it and hears it back by replication)
    for node in cluster.nodes:
        host = wait_until(lambda node=node: cluster.host(node, service, ip, port), f"the instance on {node.node_id}")
        assert host["clusterName"] == "DEFAULT"
        assert host["metadata"] == {"zone": "a"}
        assert host["instanceId"] == f"{ip}#{port}#DEFAULT#DEFAULT_GROUP@@{service}"

    listed = client.list_naming_instance(service)
    assert [(h["ip"], h["port"], h["healthy"]) for h in listed["hosts"]] == [(ip, port, True)]
    assert all("instanceId" in h for h in listed["hosts"])  # subscribe() needs it
    assert client.list_naming_instance(service, healthy_only=True)["hosts"][0]["ip"] == ip

    beat = client.send_heartbeat(service, ip, port, metadata={"zone": "a"})
    assert isinstance(beat, dict) and beat["clientBeatInterval"] > 0, beat
    assert beat.get("code") == 10200, beat

    detail = client.get_naming_instance(service, ip, port)
    assert (detail["ip"], detail["port"], detail["clusterName"], detail["healthy"]) == (ip, port, "DEFAULT", True)

    assert client.modify_naming_instance(service, ip, port, weight=3, metadata={"zone": "b"}) is True
    for node in cluster.nodes:
        wait_until(
            lambda node=node: (h := cluster.host(node, service, ip, port)) and h["weight"] == 3.0
            and h["metadata"] == {"zone": "b"},
            f"the modified instance on {node.node_id}",
        )

    assert client.remove_naming_instance(service, ip, port) is True
    for node in cluster.nodes:
        wait_until(lambda node=node: cluster.host(node, service, ip, port) is None, f"the instance gone on {node.node_id}")
    assert client.list_naming_instance(service)["hosts"] == []


def test_sdk_beat_reregisters_an_unknown_instance(cluster: RunningCluster, client: Any) -> None:
    """The SDK's beat carries the instance, so a beat for an instance the cluster does not know registers it
    (how the client's beat thread keeps instances alive across expiry)."""
    service, ip, port = unique("sdkbeat"), "10.7.0.2", 8081
    beat = client.send_heartbeat(service, ip, port, metadata={"v": "1"})
    assert isinstance(beat, dict) and "clientBeatInterval" in beat
    for node in cluster.nodes:
        host = wait_until(lambda node=node: cluster.host(node, service, ip, port), f"the beat's instance on {node.node_id}")
        assert host["metadata"] == {"v": "1"} and host["clusterName"] == "DEFAULT"
    assert client.remove_naming_instance(service, ip, port) is True


def test_sdk_groups_and_clusters(cluster: RunningCluster, client: Any) -> None:
    service = unique("sdkgrp")
    assert client.add_naming_instance(service, "10.7.0.3", 80, cluster_name="c1", group_name="G1", weight=2.5) is True
    assert client.add_naming_instance(service, "10.7.0.4", 80, cluster_name="c2", group_name="G1") is True
    node = cluster.nodes[2]

    def both() -> list[dict[str, Any]] | None:
        hosts = cluster.hosts(node, service, groupName="G1")
        return hosts if len(hosts) == 2 else None

    hosts = wait_until(both, "both instances on n3")
    wait_until(lambda: len(cluster.hosts(cluster.nodes[0], service, groupName="G1")) == 2, "both on n1")
    assert {(h["ip"], h["clusterName"], h["weight"]) for h in hosts} == {("10.7.0.3", "c1", 2.5), ("10.7.0.4", "c2", 1.0)}
    only_c1 = client.list_naming_instance(service, clusters="c1", group_name="G1")
    assert [h["ip"] for h in only_c1["hosts"]] == ["10.7.0.3"]
    assert cluster.hosts(node, service) == []  # other group
    assert client.remove_naming_instance(service, "10.7.0.3", 80, cluster_name="c1", group_name="G1") is True
    assert client.remove_naming_instance(service, "10.7.0.4", 80, cluster_name="c2", group_name="G1") is True
    for other in cluster.nodes:  # the removal went to whichever node the SDK picked: replication takes a moment
        wait_until(lambda other=other: cluster.hosts(other, service, groupName="G1") == [], f"gone on {other.node_id}")
