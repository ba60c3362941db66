"""Issue 12's naming surface on three real ``distro-node`` processes (what an outside check exercises):
probes, login with auth off and nacos-sdk-python 0.1.17 with credentials, PUT replacing an instance,
``service/list`` across groups, the catalog, switches changed on one node and read on another, and
subscribers gathered from every node."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from .conftest import NS, RunningCluster, unique, wait_until

pytestmark = pytest.mark.slow


def test_probes_and_login_with_auth_off(cluster: RunningCluster, tmp_path: Path) -> None:
    for node in cluster.nodes:
        assert cluster.http.get(f"{node.url}/nacos/v1/console/health/liveness").text == "OK"
        assert cluster.http.get(f"{node.url}/nacos/v1/console/health/readiness").text == "OK"
    login = cluster.http.post(f"{cluster.nodes[1].url}/nacos/v1/auth/login", data={"username": "nacos", "password": "x"})
    assert login.status_code == 200 and login.json()["accessToken"]
    nacos = pytest.importorskip("nacos")
    logging.getLogger("nacos").setLevel(logging.WARNING)
    client = nacos.NacosClient(",".join(cluster.addresses), username="nacos", password="nacos", logDir=str(tmp_path))
    service = unique("surface-sdk")
    assert client.add_naming_instance(service, "10.8.0.1", 80) is True
    assert client.remove_naming_instance(service, "10.8.0.1", 80) is True


def test_put_replaces_and_lists_across_groups(cluster: RunningCluster) -> None:
    service = unique("surface")
    n1, n2, n3 = cluster.nodes
    cluster.register(n1, service, "10.8.0.2", 80, metadata='{"a":"1"}', weight="3")
    cluster.register(n2, service, "10.8.0.3", 80, groupName="OTHER")
    put = cluster.call(n3, "PUT", f"{NS}/instance", serviceName=service, ip="10.8.0.2", port=80)
    assert put.text == "ok"
    for node in cluster.nodes:
        wait_until(lambda node=node: (h := cluster.host(node, service, "10.8.0.2", 80)) is not None
                   and h["metadata"] == {} and h["weight"] == 1.0, f"the replaced instance on {node.node_id}")

    def listed() -> list[str] | None:
        body = cluster.call(n3, "GET", f"{NS}/service/list", pageNo=1, pageSize=10000, groupName="*").json()
        names = [d for d in body["doms"] if service in d]
        return names if len(names) == 2 else None

    assert sorted(wait_until(listed, "both groups listed")) == [f"DEFAULT_GROUP@@{service}", f"OTHER@@{service}"]
    rows = cluster.call(n1, "GET", f"{NS}/catalog/services", serviceNameParam=service, pageNo=1,
                        pageSize=10).json()["serviceList"]
    assert {(r["groupName"], r["ipCount"]) for r in rows} == {("DEFAULT_GROUP", 1), ("OTHER", 1)}
    instances = cluster.call(n2, "GET", f"{NS}/catalog/instances", serviceName=service, clusterName="DEFAULT",
                             pageNo=1, pageSize=10).json()
    assert [i["ip"] for i in instances["list"]] == ["10.8.0.2"]
    detail = cluster.call(n3, "GET", f"{NS}/catalog/service", serviceName=service).json()
    assert detail["service"]["name"] == service and [c["name"] for c in detail["clusters"]] == ["DEFAULT"]


def test_switches_and_subscribers_span_the_cluster(cluster: RunningCluster) -> None:
    n1, n2, n3 = cluster.nodes
    put = cluster.call(n1, "PUT", f"{NS}/operator/switches", entry="pushVersion", value="c:9.9.9")
    assert put.text == "ok"
    wait_until(lambda: cluster.call(n3, "GET", f"{NS}/operator/switches").json()["pushCVersion"] == "9.9.9",
               "the switch on another node")
    service = unique("surface-subs")
    java = {"User-Agent": "Nacos-Java-Client:v1.4.2"}
    listed = cluster.http.get(f"{n2.url}{NS}/instance/list", headers=java,
                              params={"serviceName": service, "udpPort": "40999", "clientIP": "127.0.0.1"})
    assert listed.json()["cacheMillis"] == 10000
    body: dict[str, Any] = cluster.call(n1, "GET", f"{NS}/service/subscribers", serviceName=service).json()
    assert (body["count"], body["partial"]) == (1, False)
    assert body["subscribers"][0]["addrStr"] == "127.0.0.1:40999"
    assert cluster.call(n1, "GET", f"{NS}/service/subscribers", serviceName=service,
                        aggregation="false").json()["count"] == 0
