"""Operator routes and legacy aliases on an in-process node over real HTTP.

- ``operator/switches``: Nacos's switch domain; a PUT changes one entry with Nacos's checks and texts, an
  unknown entry is a 400, and ``pushEnabled``/``defaultCacheMillis``/``pushCacheMillis`` take effect;
- ``operator/cluster/state``: the shape of Nacos's Raft peer;
- ``api/srvIPXT`` and ``api/clientBeat``: list and beat on ``DEFAULT_GROUP@@<dom>``;
- every integer in ``operator/servers`` stays within 2^53.
"""

from __future__ import annotations

import httpx
import trio

from tests.client.support import InProcessCluster, register
from tests.polling import wait_for

NS = "/nacos/v1/ns"


async def test_switches_show_change_and_take_effect() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        url = (await InProcessCluster(1).start(nursery)).urls[0]
        domain = (await http.get(f"{url}{NS}/operator/switches")).json()
        assert domain["name"] == "00-00---000-NACOS_SWITCH_DOMAIN-000---00-00"
        assert (domain["clientBeatInterval"], domain["defaultCacheMillis"], domain["pushEnabled"]) == (5000, 3000, True)
        assert domain["masters"] is None and domain["httpHealthParams"] == {"max": 5000, "min": 500, "factor": 0.85}

        async def put(entry: str, value: str) -> tuple[int, str]:
            response = await http.put(f"{url}{NS}/operator/switches", params={"entry": entry, "value": value})
            return response.status_code, response.text

        assert await put("defaultCacheMillis", "500") == (400, "min default cache time  is too small(<1000)")
        assert await put("pushCacheMillis", "9999") == (400, "min cache time for http or tcp is too small(<10000)")
        assert await put("distroThreshold", "0") == (400, "distroThreshold can not be zero or negative: 0.0")
        assert await put("pushVersion", "java:1.x") == (400, "illegal version, must match: [0-9]+\\.[0-9]+\\.[0-9]+")
        assert await put("pushVersion", "rust:1.0.0") == (400, "unsupported client type: rust")
        assert await put("clientBeatInterval", "abc") == (400, 'For input string: "abc"')
        assert (await put("noSuchEntry", "1"))[0] == 400
        missing = await http.put(f"{url}{NS}/operator/switches", params={"entry": "pushEnabled"})
        assert (missing.status_code, missing.text) == (400, "Parameter 'value' is missing")

        assert await put("defaultCacheMillis", "7000") == (200, "ok")
        assert await put("pushVersion", "java:1.2.3") == (200, "ok")
        assert await put("lightBeatEnabled", "no") == (200, "ok")
        domain = (await http.get(f"{url}{NS}/operator/switches")).json()
        assert (domain["defaultCacheMillis"], domain["pushJavaVersion"], domain["lightBeatEnabled"]) == (
            7000, "1.2.3", False
        )
        listed = await http.get(f"{url}{NS}/instance/list", params={"serviceName": "sw"})
        assert listed.json()["cacheMillis"] == 7000

        subscribe = {"serviceName": "sw", "udpPort": "9", "clientIP": "127.0.0.1"}
        java = {"User-Agent": "Nacos-Java-Client:v1.4.2"}
        assert (await http.get(f"{url}{NS}/instance/list", params=subscribe, headers=java)).json()["cacheMillis"] == 10000
        assert await put("pushCacheMillis", "20000") == (200, "ok")
        assert (await http.get(f"{url}{NS}/instance/list", params=subscribe, headers=java)).json()["cacheMillis"] == 20000
        assert await put("pushEnabled", "false") == (200, "ok")
        again = await http.get(f"{url}{NS}/instance/list", params={**subscribe, "udpPort": "10"}, headers=java)
        assert again.json()["cacheMillis"] == 7000  # no new subscription while push is off

        batch = '{"defaultCacheMillis": 4000, "httpHealthParams": {"max": 5000, "min": 100, "factor": 0.5}}'
        assert await put("batch", batch) == (400, "min check time for http or tcp is too small(<500)")
        assert await put("batch", '{"defaultCacheMillis": 4000}') == (200, "ok")
        domain = (await http.get(f"{url}{NS}/operator/switches")).json()
        assert (domain["defaultCacheMillis"], domain["pushEnabled"], domain["pushJavaVersion"]) == (4000, True, "0.1.0")
        nursery.cancel_scope.cancel()


async def test_cluster_state_legacy_aliases_and_servers() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        cluster = await InProcessCluster(2).start(nursery)
        url = cluster.urls[0]
        state = (await http.get(f"{url}{NS}/operator/cluster/state")).json()
        assert state["ip"] == "127.0.0.1:9000" and state["state"] == "FOLLOWER" and state["term"] == 0

        await register(http, url, "legacy", "10.3.0.1", 80)
        await register(http, url, "legacy", "10.3.0.2", 80, groupName="OTHER")
        listed = await http.get(f"{url}{NS}/api/srvIPXT", params={"dom": "legacy", "groupName": "OTHER"})
        assert listed.status_code == 200 and [h["ip"] for h in listed.json()["hosts"]] == ["10.3.0.1"]
        missing = await http.get(f"{url}{NS}/api/srvIPXT")
        assert (missing.status_code, missing.text) == (400, "Param 'dom' is required.")
        beat = await http.put(f"{url}{NS}/api/clientBeat", params={"dom": "legacy", "ip": "10.3.0.1", "port": "80"})
        assert beat.status_code == 200 and beat.json()["code"] == 10200
        unknown = await http.put(f"{url}{NS}/api/clientBeat", params={"dom": "legacy", "ip": "10.3.0.9", "port": "80"})
        assert unknown.json()["code"] == 20404

        servers = (await http.get(f"{url}{NS}/operator/servers")).json()["servers"]
        assert len(servers) == 2
        assert all(0 <= s["extendInfo"]["lastRefreshTime"] < 2**53 for s in servers)
        nursery.cancel_scope.cancel()


async def test_a_switch_changed_on_one_node_shows_on_every_node() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        urls = (await InProcessCluster(3).start(nursery)).urls
        put = await http.put(f"{urls[2]}{NS}/operator/switches", params={"entry": "defaultCacheMillis", "value": "6000"})
        assert (put.status_code, put.text) == (200, "ok")
        for url in urls:
            async def changed(url: str = url) -> bool:
                domain = (await http.get(f"{url}{NS}/operator/switches")).json()
                return bool(domain["defaultCacheMillis"] == 6000)

            await wait_for(changed, what=f"the switch on {url}")
            listed = await http.get(f"{url}{NS}/instance/list", params={"serviceName": "anything"})
            assert listed.json()["cacheMillis"] == 6000
        nursery.cancel_scope.cancel()
