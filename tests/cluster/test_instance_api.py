"""Instance routes against Nacos 1.4.2's rules, on an in-process node over real HTTP.

- ``PUT /instance`` replaces the instance: fields not given take their defaults;
- the Java client 1.0.0 or later must name an existing instance (Nacos's texts), older or other agents
  register it; the agent comes from ``User-Agent``, else ``Client-Version``;
- ``instance/list`` gives grouped names only to the Java client 1.0.0 or later, reads ``healthyOnly`` and
  ``clusters`` as leniently as Nacos, and refuses ``udpPort=abc`` with Java's text.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import trio

from tests.client.support import InProcessCluster, list_hosts, register

NS = "/nacos/v1/ns"
JAVA = {"User-Agent": "Nacos-Java-Client:v1.4.2"}


async def _host(http: httpx.AsyncClient, url: str, service: str, **params: Any) -> dict[str, Any]:
    response = await http.get(f"{url}{NS}/instance/list", params={"serviceName": service, **params})
    assert response.status_code == 200, response.text
    (host,) = response.json()["hosts"]
    return dict(host)


async def test_put_replaces_the_instance() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        url = (await InProcessCluster(1).start(nursery)).urls[0]
        await register(http, url, "rep", "10.2.0.1", 80, weight="3", metadata='{"a":"1","b":"2"}', enabled="false")
        put = await http.put(f"{url}{NS}/instance", params={"serviceName": "rep", "ip": "10.2.0.1", "port": "80",
                                                            "metadata": '{"c":"3"}'})
        assert (put.status_code, put.text) == (200, "ok")
        host = await _host(http, url, "rep")
        assert (host["weight"], host["enabled"], host["metadata"]) == (1.0, True, {"c": "3"})
        put = await http.put(f"{url}{NS}/instance", params={"serviceName": "rep", "ip": "10.2.0.1", "port": "80",
                                                            "weight": "2"})
        assert put.text == "ok"
        host = await _host(http, url, "rep")
        assert (host["weight"], host["metadata"]) == (2.0, {})
        nursery.cancel_scope.cancel()


async def test_put_from_the_java_client_needs_an_existing_instance() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        url = (await InProcessCluster(1).start(nursery)).urls[0]
        params = {"serviceName": "jput", "ip": "10.2.0.2", "port": "81"}
        missing = await http.put(f"{url}{NS}/instance", params=params, headers=JAVA)
        assert (missing.status_code, missing.text) == (
            400, "service not found, namespace: public, service: DEFAULT_GROUP@@jput"
        )
        await register(http, url, "jput", "10.2.0.3", 81)
        absent = await http.put(f"{url}{NS}/instance", params={**params, "weight": "2.5"}, headers=JAVA)
        assert (absent.status_code, absent.text) == (
            400, "instance not exist: 10.2.0.2:81:unknown:DEFAULT_2.5_true_false_DEFAULT"
        )
        # an old Java client (and any other agent) registers it; so does an agent given as Client-Version
        old = await http.put(f"{url}{NS}/instance", params=params, headers={"User-Agent": "Nacos-Java-Client:v0.9.0"})
        assert old.text == "ok"
        via_version = await http.put(f"{url}{NS}/instance", params={**params, "port": "82"},
                                     headers={"User-Agent": "", "Client-Version": "Nacos-Java-Client:v1.4.2"})
        assert (via_version.status_code, via_version.text) == (400, "instance not exist: "
                                                               "10.2.0.2:82:unknown:DEFAULT_1.0_true_false_DEFAULT")
        present = await http.put(f"{url}{NS}/instance", params={**params, "weight": "4"}, headers=JAVA)
        assert present.text == "ok"
        response = await http.get(f"{url}{NS}/instance/list", params={"serviceName": "jput"})
        assert {(h["ip"], h["weight"]) for h in response.json()["hosts"]} == {("10.2.0.3", 1.0), ("10.2.0.2", 4.0)}
        nursery.cancel_scope.cancel()


async def test_list_names_flags_and_lenient_parameters() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        url = (await InProcessCluster(1).start(nursery)).urls[0]
        await register(http, url, "names", "10.2.0.4", 80, clusterName="c1", groupName="G")
        await register(http, url, "names", "10.2.0.5", 80, clusterName="c2", groupName="G", healthy="false")
        base = {"serviceName": "names", "groupName": "G"}
        for headers, grouped in [
            (JAVA, True),
            ({"User-Agent": "Nacos-Java-Client:v0.9.9"}, False),
            ({"User-Agent": "curl/8", "Client-Version": "Nacos-Java-Client:v1.0.0"}, True),
            ({"User-Agent": "Nacos-Python-Client:v0.1.17"}, False),
        ]:
            body = (await http.get(f"{url}{NS}/instance/list", params=base, headers=headers)).json()
            expected = "G@@names" if grouped else "names"
            assert body["dom"] == expected and {h["serviceName"] for h in body["hosts"]} == {expected}, headers
        # healthyOnly: anything but "true" is false; clusters: unknown or odd names simply match nothing
        loose = (await http.get(f"{url}{NS}/instance/list", params={**base, "healthyOnly": "yes"})).json()
        assert len(loose["hosts"]) == 2
        strict = (await http.get(f"{url}{NS}/instance/list", params={**base, "healthyOnly": "TRUE"})).json()
        assert [h["ip"] for h in strict["hosts"]] == ["10.2.0.4"]
        odd = (await http.get(f"{url}{NS}/instance/list", params={**base, "clusters": "c2,,no_such.cluster"})).json()
        assert [h["ip"] for h in odd["hosts"]] == ["10.2.0.5"]
        for bad in ("abc", "99999999999", "1.5"):
            response = await http.get(f"{url}{NS}/instance/list", params={**base, "udpPort": bad})
            assert (response.status_code, response.text) == (400, f'For input string: "{bad}"')
        nursery.cancel_scope.cancel()


async def test_the_encoding_parameter_decodes_values_in_that_charset() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        url = (await InProcessCluster(1).start(nursery)).urls[0]
        metadata = quote('{"zone":"服务"}', encoding="gbk")
        query = f"serviceName=enc&ip=10.2.0.9&port=80&metadata={metadata}&encoding=GBK"
        response = await http.post(f"{url}{NS}/instance?{query}")
        assert response.text == "ok"
        assert (await _host(http, url, "enc"))["metadata"] == {"zone": "服务"}
        body = f"serviceName=enc&ip=10.2.0.9&port=80&metadata={metadata}&encoding=gb18030".encode()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert (await http.put(f"{url}{NS}/instance", content=body, headers=form)).text == "ok"
        assert (await _host(http, url, "enc"))["metadata"] == {"zone": "服务"}
        # without it (or with a name Python does not know) values are UTF-8, as always
        unknown = query.replace("encoding=GBK", "encoding=no-such-charset")
        assert (await http.post(f"{url}{NS}/instance?{unknown}")).text == "ok"
        assert (await _host(http, url, "enc"))["metadata"]["zone"] != "服务"
        nursery.cancel_scope.cancel()


async def test_light_beats_on_a_kept_alive_connection_are_answered_inline_as_before() -> None:
    """Light beats a node answers at once (it owns the service, or its replica answers) are answered in the
    HTTP server's keep-alive lane (NamingApi.answer_now): the same answers as the handler's, beat for beat;
    a full beat, an unknown instance on a node that must ask the owner, and an invalid beat take the
    handler's path, as before."""
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        cluster = await InProcessCluster(3).start(nursery)
        for i in range(6):
            await register(http, cluster.urls[0], f"lane-{i}", "10.3.0.1", 80)
        await trio.sleep(0.1)  # replicated everywhere
        for url in cluster.urls:
            for i in range(6):
                for _ in range(3):  # the first on each connection is its task's, the rest the lane's
                    beat = await http.put(f"{url}{NS}/instance/beat",
                                          params={"serviceName": f"lane-{i}", "ip": "10.3.0.1", "port": "80"})
                    assert beat.status_code == 200
                    assert beat.json() == {"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": True}
        answered_here = sum(node.runtime.node.statistics().beats_answered_here for node in cluster.nodes)
        inline = [node.server.http_stats.inline_requests_total for node in cluster.nodes]
        assert answered_here > 0 and all(n >= 6 for n in inline), inline
        url = cluster.urls[0]
        unknown = await http.put(f"{url}{NS}/instance/beat",
                                 params={"serviceName": "lane-0", "ip": "10.3.0.9", "port": "80"})
        assert unknown.json()["code"] == 20404
        invalid = await http.put(f"{url}{NS}/instance/beat",
                                 params={"serviceName": "lane-0", "ip": "10.3.0.1", "port": "99999"})
        assert invalid.status_code == 400
        full = await http.put(f"{url}{NS}/instance/beat", params={
            "serviceName": "lane-9", "beat": '{"ip": "10.3.0.2", "port": 81, "cluster": "DEFAULT"}'})
        assert full.json()["code"] == 10200
        nursery.cancel_scope.cancel()


async def test_registrations_on_a_kept_alive_connection_are_answered_from_the_lane() -> None:
    """A registration (``POST /instance``, no body) on a kept-alive connection is submitted from the
    HTTP server's keep-alive lane (NamingApi.answer_now): at once on the owner, else answered when the
    owner's reply comes, with no task of its own; the same answers and the same effect as the handler's.
    A refusal (a persistent instance, an invalid port) takes the handler's path, as before; so does a form
    body that did not come with its head."""
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        cluster = await InProcessCluster(3).start(nursery)
        services = [f"lane-reg-{i}" for i in range(12)]
        for n, url in enumerate(cluster.urls):
            for i, service in enumerate(services):  # the first on each connection is its task's
                await register(http, url, service, f"10.4.{n}.{i}", 80)
        owners = {cluster.nodes[0].runtime.node.owner_of(cluster.nodes[0].api.keys.key(None, None, s))
                  for s in services}
        assert len(owners) > 1  # some forwarded, some applied where they came in
        inline = [node.server.http_stats.inline_requests_total for node in cluster.nodes]
        assert all(n >= len(services) - 1 for n in inline), inline
        for url in cluster.urls:
            for i, service in enumerate(services):
                assert sorted(await list_hosts(http, url, service)) == [(f"10.4.{n}.{i}", 80) for n in range(3)]
        url = cluster.urls[1]
        persistent = await http.post(f"{url}{NS}/instance", params={
            "serviceName": "lane-reg-0", "ip": "10.4.9.9", "port": "80", "ephemeral": "false"})
        assert persistent.status_code == 400 and "persistent" in persistent.text
        invalid = await http.post(f"{url}{NS}/instance", params={
            "serviceName": "lane-reg-0", "ip": "10.4.9.9", "port": "99999"})
        assert invalid.status_code == 400
        # a form body, as the Java client sends: the lane's when it came with its head (httpx writes them
        # apart, so here the connection's task takes it, as it takes any body still arriving)
        form = await http.post(f"{url}{NS}/instance", data={"serviceName": "lane-reg-0", "ip": "10.4.9.8", "port": "80"})
        assert form.text == "ok"
        assert ("10.4.9.8", 80) in await list_hosts(http, url, "lane-reg-0")
        # the same written in one piece (as urllib's http.client does): answered from the lane
        host, port = url.removeprefix("http://").split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        form_body = b"serviceName=lane-reg-0&ip=10.4.9.7&port=80"
        form_request = (b"POST /nacos/v1/ns/instance HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Type: application/x-www-form-urlencoded\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(form_body), form_body))
        received = b""
        for _ in range(2):  # the first on the connection is its task's, the second the lane's
            inline = cluster.nodes[1].server.http_stats.inline_requests_total
            await stream.send_all(form_request)
            while not received.endswith(b"\r\n\r\nok"):
                received += await stream.receive_some(4096)
            received = b""
        assert cluster.nodes[1].server.http_stats.inline_requests_total == inline + 1
        await stream.aclose()
        assert ("10.4.9.7", 80) in await list_hosts(http, url, "lane-reg-0")
        nursery.cancel_scope.cancel()


async def _read_answers(stream: trio.SocketStream, count: int) -> list[tuple[int, bytes]]:
    """``count`` responses (status, body) read off a raw stream, in order."""
    buf = bytearray()
    answers: list[tuple[int, bytes]] = []
    while len(answers) < count:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end]).decode("latin-1")
            length = int(next(line.split(":", 1)[1] for line in head.split("\r\n")
                              if line.lower().startswith("content-length:")))
            if len(buf) >= end + 4 + length:
                answers.append((int(head.split(" ", 2)[1]), bytes(buf[end + 4 : end + 4 + length])))
                del buf[: end + 4 + length]
                continue
        chunk = await stream.receive_some(65536)
        assert chunk, (answers, bytes(buf))
        buf += chunk
    return answers


async def test_pipelined_registrations_forwarded_from_the_lane_are_answered_in_order() -> None:
    """Registrations for services another node owns, pipelined on a kept-alive connection with requests of
    other answers between them (a refusal, a list), and the connection half-closed after them: every answer
    comes, in the order asked, whether the lane or the task answered it."""
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        cluster = await InProcessCluster(3).start(nursery)
        node = cluster.nodes[0]
        foreign = [s for s in (f"pipe-{i}" for i in range(40))
                   if node.runtime.node.owner_of(node.api.keys.key(None, None, s)) != "n0"][:6]
        assert len(foreign) == 6

        def reg(service: str, port: str = "80") -> bytes:
            return (f"POST {NS}/instance?serviceName={service}&ip=10.5.0.1&port={port} HTTP/1.1\r\n"
                    "Host: x\r\n\r\n").encode()

        def listing(service: str) -> bytes:
            return f"GET {NS}/instance/list?serviceName={service} HTTP/1.1\r\nHost: x\r\n\r\n".encode()

        for half_close in (False, True):
            stream = await trio.open_tcp_stream("127.0.0.1", node.port)
            await stream.send_all(listing("none"))  # the connection's first request: the next are the lane's
            await _read_answers(stream, 1)
            a, b, c = foreign[:3] if not half_close else foreign[3:]
            await stream.send_all(reg(a) + reg(b, "99999") + listing(a) + reg(c))
            await stream.send_all(reg(b) + listing(b))
            if half_close:
                await stream.send_eof()
            answers = await _read_answers(stream, 6)
            assert [status for status, _ in answers] == [200, 400, 200, 200, 200, 200], answers
            assert answers[0][1] == b"ok" and answers[3][1] == b"ok" and answers[4][1] == b"ok"
            # the lists' answers where they were asked (what they hold is this node's replica: eventually)
            assert json.loads(answers[2][1])["name"].endswith(a) and json.loads(answers[5][1])["name"].endswith(b)
            if half_close:
                assert await stream.receive_some(100) == b""
            await stream.aclose()
            with trio.fail_after(10):
                for service in (a, b, c):
                    while await list_hosts(http, cluster.urls[1], service) != [("10.5.0.1", 80)]:
                        await trio.sleep(0.01)
        assert node.server.http_stats.inline_requests_total >= 2  # each connection's reg(a), deferred in the lane
        nursery.cancel_scope.cancel()
