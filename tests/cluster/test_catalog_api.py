"""The catalog routes on in-process nodes over real HTTP: ``catalog/services`` (filters, paging, the
``withInstances`` form), ``catalog/instances``, ``catalog/service``, ``service/list`` across groups,
``service/names`` and ``api/allDomNames``."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.client.support import InProcessCluster, register

NS = "/nacos/v1/ns"


async def _populate(http: httpx.AsyncClient, url: str) -> None:
    await register(http, url, "alpha", "10.1.0.1", 80, clusterName="c1")
    await register(http, url, "alpha", "10.1.0.2", 81, clusterName="c2", healthy="false")
    await register(http, url, "beta", "10.1.0.3", 80, groupName="G1", metadata='{"zone":"a"}')
    await register(http, url, "gamma", "10.1.0.1", 9090)
    await register(http, url, "other", "10.1.0.9", 80, namespaceId="dev")
    create = await http.post(f"{url}{NS}/service", params={"serviceName": "empty", "metadata": "team=x"})
    assert create.text == "ok"


async def _get(http: httpx.AsyncClient, url: str, path: str, **params: Any) -> Any:
    response = await http.get(f"{url}{NS}{path}", params=params)
    assert response.status_code == 200, (path, params, response.status_code, response.text)
    return response.json()


async def test_catalog_services_filters_and_pages() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        cluster = await InProcessCluster(1).start(nursery)
        url = cluster.urls[0]
        await _populate(http, url)
        body = await _get(http, url, "/catalog/services", pageNo=1, pageSize=10)
        assert body["count"] == 4
        assert [(r["groupName"], r["name"]) for r in body["serviceList"]] == [
            ("DEFAULT_GROUP", "alpha"), ("DEFAULT_GROUP", "empty"), ("DEFAULT_GROUP", "gamma"), ("G1", "beta")
        ]
        alpha = body["serviceList"][0]
        assert alpha == {"name": "alpha", "groupName": "DEFAULT_GROUP", "clusterCount": 2, "ipCount": 2,
                         "healthyInstanceCount": 1, "triggerFlag": "false"}
        assert body["serviceList"][1]["ipCount"] == 0 and body["serviceList"][1]["triggerFlag"] == "false"

        page2 = await _get(http, url, "/catalog/services", pageNo=2, pageSize=3)
        assert (page2["count"], [r["name"] for r in page2["serviceList"]]) == (4, ["beta"])
        assert (await _get(http, url, "/catalog/services", hasIpCount="true"))["count"] == 3
        by_name = await _get(http, url, "/catalog/services", serviceNameParam="mm")
        assert [r["name"] for r in by_name["serviceList"]] == ["gamma"]
        by_group = await _get(http, url, "/catalog/services", groupNameParam="1")
        assert [r["name"] for r in by_group["serviceList"]] == ["beta"]
        by_ip = await _get(http, url, "/catalog/services", instance="10.1.0.1")
        assert [r["name"] for r in by_ip["serviceList"]] == ["alpha", "gamma"]
        by_ip_port = await _get(http, url, "/catalog/services", instance="10.1.0.1:9090")
        assert [r["name"] for r in by_ip_port["serviceList"]] == ["gamma"]
        dev = await _get(http, url, "/catalog/services", namespaceId="dev")
        assert [r["name"] for r in dev["serviceList"]] == ["other"]

        detailed = await _get(http, url, "/catalog/services", withInstances="true", pageNo=1, pageSize=2)
        assert [(d["groupName"], d["serviceName"]) for d in detailed] == [("DEFAULT_GROUP", "alpha"),
                                                                         ("DEFAULT_GROUP", "empty")]
        assert detailed[0]["clusterMap"]["c1"]["hosts"] == [
            {"valid": True, "metadata": {}, "port": 80, "ip": "10.1.0.1", "weight": 1.0, "enabled": True}
        ]
        assert detailed[1] == {"serviceName": "empty", "groupName": "DEFAULT_GROUP", "clusterMap": {},
                               "metadata": {"team": "x"}}

        # a change shows at once (the counts are per view revision)
        await register(http, url, "alpha", "10.1.0.4", 80, clusterName="c1")
        again = await _get(http, url, "/catalog/services", serviceNameParam="alpha")
        assert again["serviceList"][0]["ipCount"] == 3
        nursery.cancel_scope.cancel()


async def test_catalog_instances_and_service() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        cluster = await InProcessCluster(1).start(nursery)
        url = cluster.urls[0]
        await _populate(http, url)
        listed = await _get(http, url, "/catalog/instances", serviceName="alpha", clusterName="c2", pageNo=1,
                            pageSize=10)
        assert listed["count"] == 1
        (inst,) = listed["list"]
        assert {k: inst[k] for k in ("instanceId", "ip", "port", "healthy", "clusterName", "serviceName",
                                     "ephemeral", "instanceHeartBeatTimeOut", "ipDeleteTimeout")} == {
            "instanceId": "10.1.0.2#81#c2#DEFAULT_GROUP@@alpha", "ip": "10.1.0.2", "port": 81, "healthy": False,
            "clusterName": "c2", "serviceName": "DEFAULT_GROUP@@alpha", "ephemeral": True,
            "instanceHeartBeatTimeOut": 15000, "ipDeleteTimeout": 30000,
        }
        assert 0 < inst["lastBeat"] < 2**53  # this (only) node owns the service: it knows the last beat

        for params, status, text in [
            ({"serviceName": "alpha", "pageNo": 1, "pageSize": 1}, 400, "Parameter 'clusterName' is missing"),
            ({"serviceName": "alpha", "clusterName": "c1", "pageSize": 1}, 400, "Parameter 'pageNo' is missing"),
            ({"serviceName": "nope", "clusterName": "c1", "pageNo": 1, "pageSize": 1}, 404,
             "service DEFAULT_GROUP@@nope is not found!"),
            ({"serviceName": "alpha", "clusterName": "c9", "pageNo": 1, "pageSize": 1}, 404,
             "cluster c9 is not found!"),
        ]:
            response = await http.get(f"{url}{NS}/catalog/instances", params=params)
            assert (response.status_code, response.text) == (status, text), params

        detail = await _get(http, url, "/catalog/service", serviceName="beta", groupName="G1")
        assert detail["service"] == {"name": "beta", "protectThreshold": 0.0, "groupName": "G1",
                                     "selector": {"type": "none"}, "metadata": {}}
        assert [(c["name"], c["serviceName"], c["healthChecker"]) for c in detail["clusters"]] == [
            ("DEFAULT", "G1@@beta", {"type": "TCP"})
        ]
        missing = await http.get(f"{url}{NS}/catalog/service", params={"serviceName": "nope"})
        assert (missing.status_code, missing.text) == (404, "service DEFAULT_GROUP@@nope is not found!")
        nursery.cancel_scope.cancel()


async def test_service_list_names_and_all_dom_names() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        cluster = await InProcessCluster(1).start(nursery)
        url = cluster.urls[0]
        await _populate(http, url)
        one_group = await _get(http, url, "/service/list", pageNo=1, pageSize=10)
        assert one_group == {"doms": ["alpha", "empty", "gamma"], "count": 3}
        every_group = await _get(http, url, "/service/list", pageNo=1, pageSize=10, groupName="*")
        assert every_group == {"doms": ["DEFAULT_GROUP@@alpha", "DEFAULT_GROUP@@empty", "DEFAULT_GROUP@@gamma",
                                        "G1@@beta"], "count": 4}
        paged = await _get(http, url, "/service/list", pageNo=2, pageSize=3, groupName="*")
        assert paged == {"doms": ["G1@@beta"], "count": 4}
        labelled = await _get(http, url, "/service/list", pageNo=1, pageSize=10, groupName="*",
                              selector='{"type":"label","expression":"INSTANCE.metadata.zone = \'a\'"}')
        assert labelled == {"doms": ["G1@@beta"], "count": 1}
        by_service_meta = await _get(http, url, "/service/list", pageNo=1, pageSize=10,
                                     selector='{"type":"label","expression":"SERVICE.metadata.team=x"}')
        assert by_service_meta == {"doms": ["empty"], "count": 1}

        names = await _get(http, url, "/service/names")
        assert names["count"] == 2
        assert sorted(names["services"]["public"]) == ["alpha", "beta", "empty", "gamma"]
        assert names["services"]["dev"] == ["other"]
        assert (await _get(http, url, "/service/names", namespaceId="public", expr="amm"))["services"] == {
            "public": ["gamma"]
        }
        doms = await _get(http, url, "/api/allDomNames")
        assert doms["count"] == 5 and doms["doms"]["dev"] == ["other"]
        nursery.cancel_scope.cancel()


async def test_configured_clusters_count_in_the_service_table() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        url = (await InProcessCluster(1).start(nursery)).urls[0]
        await register(http, url, "clus", "10.1.0.1", 80, clusterName="c1")
        put = await http.put(f"{url}{NS}/cluster", params={"serviceName": "clus", "clusterName": "c9",
                                                          "metadata": '{"k":"v"}'})
        assert put.text == "ok", put.text
        row = (await _get(http, url, "/catalog/services", serviceNameParam="clus"))["serviceList"][0]
        assert (row["clusterCount"], row["ipCount"]) == (2, 1)
        # the configured cluster exists (as in Nacos) although no instance is in it
        empty = await _get(http, url, "/catalog/instances", serviceName="clus", clusterName="c9", pageNo=1,
                           pageSize=10)
        assert empty == {"list": [], "count": 0}
        nursery.cancel_scope.cancel()
