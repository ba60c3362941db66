"""Fuzzing the public API of a live cluster, and its validation and limits.

A three-node cluster runs in a background thread (its own ``trio.run``): each node is a real
``NodeServer`` built from ``parse_settings`` (so the HTTP limits and auth come from the real flags), with
``MemoryNetwork`` as its peer transport, serving its API on 127.0.0.1:<free port>. The tests are plain synchronous Hypothesis tests talking raw HTTP over sockets.

Properties: no request makes a node answer 5xx (501 only for an unknown route or transfer coding),
without a valid token no protected route answers anything but 403, every node stays up (``/healthz``),
and replication still converges afterwards. One more test fuzzes the peer port of real ``distro-node``
processes.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.api.push import PushConfig
from cluster.api.watch import WATCH_PATH
from cluster.node.memlink import MemoryNetwork
from cluster.node.settings import parse_settings
from cluster.node.wiring import NodeServer
from cluster.tools.launcher import PEER_PORT_OFFSET, LocalNode, free_ports
from tests.polling import wait_until

NODES = 3
SECRET = "fuzz-token-secret-0123456789abcdef0123"
PASSWORD = "fuzz-admin-password"
MAX_BODY = 65_536
MAX_INSTANCES = 50
NS = "/nacos/v1/ns"
IO_TIMEOUT = 10.0

# ------------------------------------------------------------------------------------------------
# the cluster in a background thread
# ------------------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> object:
        return json.loads(self.body)


def exchange(port: int, data: bytes, *, shutdown: bool = False) -> Response | None:
    """Send raw bytes on a fresh connection and read until the server closes; None if nothing came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        try:
            sock.sendall(data)
            if shutdown:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server may close early (413 before the body is sent): read what it said
            pass
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return None
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(status, headers, body)


def build_request(
    method: str,
    target: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT", "DELETE", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def request(
    port: int,
    method: str,
    path: str,
    params: dict[str, str] | None = None,
    *,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    target = path + ("?" + urlencode(params, quote_via=quote) if params else "")
    body = urlencode(form, quote_via=quote).encode() if form else b""
    all_headers = dict(headers or {})
    if form:
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    response = exchange(port, build_request(method, target, body=body, headers=all_headers))
    assert response is not None, (method, target)
    return response


async def start_node(nursery: trio.Nursery, network: MemoryNetwork, argv: list[str]) -> tuple[NodeServer, int]:
    """A running NodeServer from real flags, on ``network`` instead of peer links, serving HTTP on
    127.0.0.1:<free port> (its advertised address and peers are the flags'); the server and that port."""
    node_settings = replace(parse_settings(argv), host="127.0.0.1", port=0)
    server = NodeServer(node_settings, transport=network.transport, push=PushConfig(bind_host="127.0.0.1"))
    port: int = await nursery.start(server.run)
    return server, port


async def wait_ready(servers: list[NodeServer]) -> None:
    with trio.fail_after(30):
        for server in servers:
            await server.runtime.ready_event.wait()
        while not all(len(s.runtime.node.live_members()) == len(servers) for s in servers):
            await trio.sleep(0.02)


class Cluster:
    """NODES in-process nodes with --auth, in one background trio thread."""

    def __init__(self, extra_flags: tuple[str, ...] = ()) -> None:
        self.extra_flags = extra_flags
        self.ports: list[int] = []
        self.servers: list[NodeServer] = []
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._thread_main, name="fuzz-cluster", daemon=True)
        self.access_token = ""

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        peers = ",".join(f"127.0.0.1:{18848 + i}" for i in range(NODES))
        async with trio.open_nursery() as nursery:
            network = MemoryNetwork()
            await nursery.start(network.run)
            for i in range(NODES):
                server, port = await start_node(nursery, network, [
                    "--node-id", f"n{i}", "--port", str(18848 + i), "--peers", peers,
                    "--cluster-secret", "fuzz-cluster-secret-0123456789abcdef",
                    "--auth", "--token-secret", SECRET, "--admin-password", PASSWORD,
                    "--max-body-bytes", str(MAX_BODY),
                    "--max-instances-per-service", str(MAX_INSTANCES),
                    *self.extra_flags,
                ])
                self.ports.append(port)
                self.servers.append(server)
            await wait_ready(self.servers)
            self._started.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def start(self) -> None:
        self._thread.start()
        assert self._started.wait(60), "cluster did not start"
        if self._error is not None:
            raise self._error
        response = request(self.ports[0], "POST", "/nacos/v1/auth/login", {"username": "nacos", "password": PASSWORD})
        assert response.status == 200, response.text
        token = json.loads(response.body)["accessToken"]
        assert isinstance(token, str)
        self.access_token = token

    def stop(self) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(30)
        assert not self._thread.is_alive()
        if self._error is not None:
            raise self._error

    def status_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for server in self.servers:
            for status, count in server.http_stats.responses_by_status.items():
                counts[status] = counts.get(status, 0) + count
        return counts


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    c.start()
    try:
        yield c
    finally:
        c.stop()


def listed_ips(port: int, token: str, service: str) -> set[str]:
    response = request(port, "GET", f"{NS}/instance/list", {"serviceName": service, "accessToken": token})
    assert response.status == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return {host["ip"] for host in body["hosts"]}


def assert_alive_and_converging(c: Cluster, service: str, ip: str) -> None:
    for port in c.ports:
        assert request(port, "GET", "/healthz").status == 200
    response = request(
        c.ports[0], "POST", f"{NS}/instance", {"serviceName": service, "ip": ip, "port": "80", "accessToken": c.access_token}
    )
    assert (response.status, response.text) == (200, "ok")
    wait_until(lambda: all(ip in listed_ips(port, c.access_token, service) for port in c.ports),
               f"{ip} listed on every node")


# ------------------------------------------------------------------------------------------------
# strategies
# ------------------------------------------------------------------------------------------------
PEER_INTERNAL = [
    f"{NS}/distro/datum",
    f"{NS}/distro/datums",
    f"{NS}/distro/checksum",
    f"{NS}/service/status",
    f"{NS}/instance/statuses",
    "/nacos/v1/core/cluster/report",
]
OPEN = {"/healthz", "/readyz", "/metrics", "/nacos/v1/auth/login", "/nacos/v1/auth/users/login",
        "/nacos/v1/console/health/liveness", "/nacos/v1/console/health/readiness",
        "/nacos/v1/console/server/state"}  # the console asks it whether to show its login page
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]
_KEY = ["namespaceId", "groupName", "serviceName", "dom"]
_INSTANCE = [*_KEY, "ip", "port", "clusterName", "cluster", "weight", "healthy", "valid", "enabled", "enable",
             "metadata", "ephemeral", "app"]
# What each route reads (cluster/api/routes.py), for the single-parameter sweep and the plausible requests.
ROUTE_PARAMS = {
    f"{NS}/instance": _INSTANCE,
    f"{NS}/instance/list": [*_KEY, "clusters", "healthyOnly", "isCheck", "udpPort", "clientIP", "app", "env"],
    f"{NS}/instance/beat": [*_KEY, "ip", "port", "clusterName", "cluster", "beat"],
    f"{NS}/service": [*_KEY, "protectThreshold", "metadata", "selector"],
    f"{NS}/service/list": ["pageNo", "pageSize", "namespaceId", "groupName", "selector"],
    f"{NS}/catalog/services": ["pageNo", "pageSize", "namespaceId", "serviceNameParam", "groupNameParam"],
    f"{NS}/operator/servers": ["healthy"],
    f"{NS}/operator/metrics": [],
    f"{NS}/operator/distro/server": _KEY,
    f"{NS}/operator/push/state": ["detail", "reset"],
    f"{NS}/service/subscribers": [*_KEY, "pageNo", "pageSize", "aggregation"],
    WATCH_PATH: [*_KEY, "clusters", "healthyOnly", "checksum", "timeoutMs"],
    "/nacos/v1/auth/login": ["username", "password"],
    "/nacos/v1/auth/users/login": ["username", "password"],
    "/healthz": [],
    "/readyz": [],
    "/metrics": [],
}
PARAM_NAMES = sorted({name for names in ROUTE_PARAMS.values() for name in names}
                     | {"encoding", "expr", "responsibleOnly", "aggregation", "key", "keys", "source", "tid"})
VALID_BEAT = {"ip": "10.0.0.1", "port": 8080, "weight": 1.0, "cluster": "c1", "metadata": {"k": "v"},
              "serviceName": "DEFAULT_GROUP@@svc"}
VALID = {
    "namespaceId": "public", "groupName": "DEFAULT_GROUP", "serviceName": "svc", "dom": "svc", "ip": "10.0.0.1",
    "port": "8080", "clusterName": "c1", "cluster": "c1", "clusters": "c1,DEFAULT", "weight": "2.5",
    "healthy": "true", "valid": "true", "enabled": "True", "enable": "true", "metadata": '{"k": "v"}',
    "ephemeral": "true", "app": "app1", "env": "", "healthyOnly": "false", "isCheck": "false", "udpPort": "9",
    "clientIP": "127.0.0.1", "beat": json.dumps(VALID_BEAT), "protectThreshold": "0.5", "selector": '{"type":"none"}',
    "pageNo": "1", "pageSize": "10", "serviceNameParam": "sv", "groupNameParam": "DEF",
    "username": "nacos", "password": PASSWORD, "checksum": "abc", "timeoutMs": "0", "detail": "true",
    "reset": "false", "aggregation": "false",
}
# A watch whose checksum matches waits up to timeoutMs (default 30 s): the fuzzer keeps it short.
SAFE_TIMEOUTS = {"0", "1", "50", "-1", "x", "", "9" * 5000, "1e3", "NaN"}
SPECIAL_VALUES = [
    "", " ", "None", "null", "NaN", "nan", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e999", "1e-999",
    "-1", "0", "1", "65535", "65536", "2147483647", "2147483648", "-2147483649", "9" * 5000, "1_000", "0x10",
    "١٢٣", "1.5", "1e3", "true", "True", "TRUE", "false", "yes", "{}", "[]", "{", '{"a":1}', '{"a":{"b":1}}',
    '{"a":[1]}', '{"a":null,"b":true,"c":1.5}', "a=b,c=d", "a=b,,c", "=x", "a", "DEFAULT", "DEFAULT_GROUP",
    "DEFAULT_GROUP@@svc", "@@", "@@svc", "g@@", "a@@b@@c", "public", "10.0.0.1", "256.0.0.1", "1.2.3",
    "::1", "[::1]", "fe80::1%eth0", "host.example", "svc", "svc-1", "a" * 300, "x" * 7000, "\x00", "\u202e",
    "😀", "é" * 100, "%zz", "%", "%C3", "%00", "a\tb", "\r\n", '{"type":"label","expression":"x"}',
    '{"type":"none"}', '{"type":[]}', '{"type":{}}', '"str"', "1" * 400 + "e1",
]
# Adversarial JSON values for the fields of a beat.
JSON_VALUES: list[object] = [
    float("inf"), float("-inf"), float("nan"), 10**400, -(10**400), 1e308, -1, 0, 65536, 2**31, 2**63, 1.5,
    "80", "", "None", None, True, False, [], {}, [1], {"a": {}}, {"a": [1]}, {"a": None}, "x" * 300,
    "10.0.0.1", "😀", "c_1", {"preserved.heart.beat.interval": "9" * 20},
]
json_values = st.one_of(
    st.sampled_from(JSON_VALUES),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=5), st.integers(), st.none()), max_size=3),
)


def beat_json(fields: dict[str, object]) -> str:
    """JSON as a client might send it: NaN/Infinity written as such (json.loads accepts them), ints of any size."""
    parts = []
    for key, value in fields.items():
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**300:
            text = ("-" if value < 0 else "") + "9" * 400
        else:
            text = json.dumps(value)
        parts.append(f"{json.dumps(key)}:{text}")
    return "{" + ",".join(parts) + "}"


@st.composite
def beats(draw: st.DrawFn) -> str:
    fields: dict[str, object] = {k: v for k, v in VALID_BEAT.items() if draw(st.integers(0, 4))}
    for name in draw(st.lists(st.sampled_from([*VALID_BEAT, "ephemeral", "scheduled", "junk"]), max_size=3)):
        fields[name] = draw(json_values)
    return beat_json(fields)


values = st.one_of(
    st.sampled_from(SPECIAL_VALUES),
    st.text(max_size=40),
    st.integers().map(str),
    st.floats().map(repr),
    st.integers(min_value=0, max_value=70000).map(str),
    st.sampled_from(["svc", "orders", "DEFAULT_GROUP@@svc", "G1@@orders", "fuzz-a"]),
)


@st.composite
def param_sets(draw: st.DrawFn, path: str) -> dict[str, str]:
    """Mostly-valid parameters of the route with a few mutated, absent or added."""
    names = ROUTE_PARAMS.get(path, [])
    params = {name: VALID[name] for name in names if name in VALID and draw(st.integers(0, 3))}
    for name in draw(st.lists(st.one_of(st.sampled_from(names or PARAM_NAMES), st.sampled_from(PARAM_NAMES),
                                        st.text(min_size=1, max_size=10)), max_size=3)):
        params[name] = draw(beats()) if name == "beat" else draw(values)
    if "beat" in params and draw(st.booleans()):
        params["beat"] = draw(beats())
    if path == WATCH_PATH and params.get("timeoutMs", "") not in SAFE_TIMEOUTS - {""}:
        params["timeoutMs"] = draw(st.sampled_from(sorted(SAFE_TIMEOUTS - {""})))
    return params


TOKEN_MODES = ["header", "param", "form", "none", "junk", "None", "other-secret", "spoofed-server"]


@dataclass
class FuzzRequest:
    method: str
    path: str
    params: dict[str, str]
    encoding: str  # query | form | both | form-no-content-type | json-body | raw-query
    token_mode: str
    raw_query: str


@st.composite
def fuzz_requests(draw: st.DrawFn) -> FuzzRequest:
    method, path = draw(st.one_of(
        st.sampled_from(ROUTE_PAIRS),  # mostly real routes, so the handlers get exercised
        st.sampled_from(ROUTE_PAIRS),
        st.sampled_from(ROUTE_PAIRS),
        st.tuples(st.sampled_from(METHODS), st.one_of(
            st.sampled_from(ALL_PATHS),
            st.sampled_from(PEER_INTERNAL),
            st.sampled_from(["/", "/nacos", f"{NS}/", f"{NS}/instance/", f"{NS}//instance", "/healthz/x"]),
        )),
    ))
    return FuzzRequest(
        method=method,
        path=path,
        params=draw(param_sets(path.rstrip("/"))),
        encoding=draw(st.sampled_from(
            ["query", "query", "query", "form", "both", "form-no-content-type", "json-body", "raw-query"]
        )),
        token_mode=draw(st.sampled_from(TOKEN_MODES[:3] * 4 + TOKEN_MODES[3:])),
        raw_query=draw(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=200)),
    )


def _route_pairs() -> list[tuple[str, str]]:
    async def collect() -> list[tuple[str, str]]:
        server = NodeServer(parse_settings(
            ["--port", "1", "--auth", "--token-secret", SECRET, "--admin-password", PASSWORD]
        ))
        return sorted(server.api.routes)

    return trio.run(collect)


ROUTE_PAIRS = _route_pairs()
ALL_PATHS = sorted({path for _, path in ROUTE_PAIRS})
OTHER_SECRET_TOKEN = (
    "eyJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoibmFjb3MiLCJ2IjoxfQ."
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
)


def encode(fr: FuzzRequest, token: str) -> bytes:
    params = dict(fr.params)
    headers: dict[str, str] = {}
    if fr.token_mode == "header":
        headers["Authorization"] = f"Bearer {token}"
    elif fr.token_mode in ("param", "form"):
        params["accessToken"] = token
    elif fr.token_mode == "junk":
        params["accessToken"] = "junk.token"
    elif fr.token_mode == "None":
        params["accessToken"] = "None"
    elif fr.token_mode == "other-secret":
        headers["Authorization"] = f"Bearer {OTHER_SECRET_TOKEN}"
    elif fr.token_mode == "spoofed-server":
        headers.update({"User-Agent": "Nacos-Server:1.4.2", "serverIdentity": "security", "Nacos-Server": "1.4.2"})
    if fr.token_mode == "form":
        form = {"accessToken": params.pop("accessToken")}
    else:
        form = {}
    names = list(params)
    query_part: dict[str, str] = {}
    form_part: dict[str, str] = dict(form)
    if fr.encoding in ("query", "json-body", "raw-query"):
        query_part = params
    elif fr.encoding in ("form", "form-no-content-type"):
        form_part.update(params)
    else:  # both: half and half, and the first name in both places (query wins)
        for i, name in enumerate(names):
            (query_part if i % 2 == 0 else form_part)[name] = params[name]
        if names:
            form_part.setdefault(names[0], "from-the-body")
    query = urlencode(query_part, quote_via=quote)
    if fr.encoding == "raw-query":
        query = (query + "&" if query else "") + fr.raw_query
    body = b""
    if form_part:
        body = urlencode(form_part, quote_via=quote).encode()
        if fr.encoding != "form-no-content-type" or form:
            headers["Content-Type"] = "application/x-www-form-urlencoded; charset=UTF-8"
    if fr.encoding == "json-body":
        body = json.dumps(fr.params).encode()
        headers["Content-Type"] = "application/json"
    target = fr.path + ("?" + query if query else "")
    return build_request(fr.method, target, body=body, headers=headers)


def acceptable(fr: FuzzRequest, response: Response) -> None:
    """No 5xx except 501 for an unknown route; no protected route answers without a valid token."""
    route_exists = any(fr.path.rstrip("/") == p for p in ALL_PATHS)
    if response.status >= 500:
        assert response.status == 501, (fr, response.status, response.text)
        assert fr.method == "HEAD" or response.text.startswith("no such api:"), (fr, response.text)
    if response.status in (413, 414, 431):  # refused by the HTTP layer before any handler
        return
    protected = route_exists and fr.path.rstrip("/") not in OPEN
    # Without a token, Nacos's username and password parameters may authenticate the request (issue 12).
    credentials = fr.params.get("username") == "nacos" and fr.params.get("password") == PASSWORD
    valid = fr.token_mode in ("header", "param", "form") or (credentials and fr.token_mode in ("none", "spoofed-server"))
    if protected and not valid and response.status != 501:
        if response.status == 429:  # wrong credentials count as failed logins of this address
            return
        assert response.status == 403, (fr, response.status, response.text)
        assert fr.method == "HEAD" or response.text in ("user not found!", "token invalid!", "unknown user!"), (
            response.text
        )


# ------------------------------------------------------------------------------------------------
# the fuzz tests
# ------------------------------------------------------------------------------------------------
@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(fr=fuzz_requests())
def test_fuzzed_requests_never_5xx(cluster: Cluster, fr: FuzzRequest) -> None:
    port = random.Random(repr(fr.params)).choice(cluster.ports)
    response = exchange(port, encode(fr, cluster.access_token))
    assert response is not None
    acceptable(fr, response)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(fr=fuzz_requests(), cut=st.floats(min_value=0.0, max_value=1.0), shutdown=st.booleans())
def test_truncated_requests_are_harmless(cluster: Cluster, fr: FuzzRequest, cut: float, shutdown: bool) -> None:
    data = encode(fr, cluster.access_token)
    truncated = data[: int(len(data) * cut)]
    if len(truncated) == len(data):
        truncated = truncated[:-1]
    port = cluster.ports[len(truncated) % NODES]
    if shutdown:  # the client says it is done: the server answers 400 or just closes
        response = exchange(port, truncated, shutdown=True)
        assert response is None or response.status < 500, response
    else:  # the client goes away mid-request
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
            sock.sendall(truncated)
    assert request(port, "GET", "/healthz").status == 200


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(min_size=1, max_size=2000))
def test_junk_bytes_are_harmless(cluster: Cluster, junk: bytes) -> None:
    response = exchange(cluster.ports[0], junk, shutdown=True)
    assert response is None or response.status < 500 or response.status == 501, response


def test_cluster_alive_and_converging_after_fuzzing(cluster: Cluster) -> None:
    """Runs after the fuzz tests above (same module-scoped cluster)."""
    assert_alive_and_converging(cluster, "after-fuzz", "10.9.9.9")
    counts = cluster.status_counts()
    assert not any(status >= 500 and status != 501 for status in counts), counts


# ------------------------------------------------------------------------------------------------
# validation: every bad parameter is a 400 saying what is wrong
# ------------------------------------------------------------------------------------------------
BAD_REGISTRATIONS = [
    ({"ip": "10.0.0.1", "port": "80"}, "Param 'serviceName' is required."),
    ({"serviceName": "s", "port": "80"}, "Param 'ip' is required."),
    ({"serviceName": "s", "ip": "10.0.0.1"}, "Param 'port' is required."),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "x"}, "Param 'port' is illegal, it must be an integer"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "65536"}, "Param 'port' is illegal, it must be in [0, 65535]"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "-1"}, "Param 'port' is illegal"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "9" * 5000}, "Param 'port' is illegal"),
    ({"serviceName": "s", "ip": "300.0.0.1", "port": "80"}, "Your IP address is spelled incorrectly"),
    ({"serviceName": "s", "ip": "a b", "port": "80"}, "Your IP address is spelled incorrectly"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "80", "weight": "NaN"}, "Param 'weight' is illegal"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "80", "weight": "1e999"}, "Param 'weight' is illegal"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "80", "weight": "x"}, "Param 'weight' is illegal"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "80", "weight": "10001"}, "weights range from 0.0 to 10000.0"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "80", "healthy": "maybe"}, "Param 'healthy' is illegal"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "80", "enabled": "1"}, "Param 'enabled' is illegal"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "80", "ephemeral": "false"}, "persistent instances"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "80", "ephemeral": "nope"}, "Param 'ephemeral' is illegal"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "80", "clusterName": "a_b"}, "cluster name can only have"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "80", "metadata": "{"}, "metadata format incorrect"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "80", "metadata": "[1]"}, "metadata format incorrect"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "80", "metadata": '{"a":{}}'}, "metadata format incorrect"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "80", "metadata": "novalue"}, "metadata format incorrect"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "80", "metadata": "k=" + "v" * 5000}, "metadata is too large"),
    ({"serviceName": "s", "ip": "10.0.0.1", "port": "80",
      "metadata": ",".join(f"k{i}=v" for i in range(65))}, "metadata has too many keys"),
    ({"serviceName": "s b", "ip": "10.0.0.1", "port": "80"}, "dom name can only have these characters"),
    ({"serviceName": "x" * 300, "ip": "10.0.0.1", "port": "80"}, "Param 'serviceName' is too long"),
    ({"serviceName": "a@@b@@c", "ip": "10.0.0.1", "port": "80"}, "Param 'serviceName' is illegal"),
    ({"serviceName": "@@b", "ip": "10.0.0.1", "port": "80"}, "groupName can't be empty"),
    ({"serviceName": "s", "groupName": "g@@h", "ip": "10.0.0.1", "port": "80"}, "Param 'groupName' is illegal"),
    ({"serviceName": "s", "namespaceId": "a/b", "ip": "10.0.0.1", "port": "80"}, "Param 'namespaceId' is illegal"),
    ({"serviceName": "s", "namespaceId": "n" * 200, "ip": "10.0.0.1", "port": "80"}, "Param 'namespaceId' is illegal"),
]


def test_bad_registrations_get_400_saying_what_is_wrong(cluster: Cluster) -> None:
    for params, text in BAD_REGISTRATIONS:
        response = request(cluster.ports[1], "POST", f"{NS}/instance", {**params, "accessToken": cluster.access_token})
        assert response.status == 400, (params, response.status, response.text)
        assert text in response.text, (params, response.text)


BAD_OTHERS = [
    # healthyOnly and clusters are read as leniently as Nacos (issue 12): udpPort is not
    ("GET", f"{NS}/instance/list", {"serviceName": "s", "udpPort": "abc"}, 'For input string: "abc"'),
    ("GET", f"{NS}/instance/list", {}, "Param 'serviceName' is required."),
    ("GET", f"{NS}/service/list", {"pageSize": "10"}, "Param 'pageNo' is required."),
    ("GET", f"{NS}/service/list", {"pageNo": "0", "pageSize": "10"}, "Param 'pageNo' is illegal"),
    ("GET", f"{NS}/service/list", {"pageNo": "1", "pageSize": "100000"}, "Param 'pageSize' is illegal"),
    ("GET", f"{NS}/catalog/services", {"pageNo": "x"}, "Param 'pageNo' is illegal"),
    ("POST", f"{NS}/service", {"serviceName": "s2", "protectThreshold": "2"}, "Param 'protectThreshold' is illegal"),
    ("POST", f"{NS}/service", {"serviceName": "s2", "protectThreshold": "nan"}, "Param 'protectThreshold' is illegal"),
    ("POST", f"{NS}/service", {"serviceName": "s2", "selector": "{"}, "Param 'selector' is illegal"),
    ("POST", f"{NS}/service", {"serviceName": "s2", "selector": '{"type":"x"}'}, "Param 'selector' is illegal"),
    ("PUT", f"{NS}/service", {"serviceName": "s2"}, "Param 'protectThreshold' is required."),
    ("PUT", f"{NS}/instance/beat", {"serviceName": "s", "beat": "{"}, "Param 'beat' is illegal"),
    ("PUT", f"{NS}/instance/beat", {"serviceName": "s", "beat": "[1]"}, "Param 'beat' is illegal"),
    ("PUT", f"{NS}/instance/beat", {"serviceName": "s", "beat": '{"ip":"10.0.0.1","port":"x"}'},
     "Param 'beat' is illegal"),
    ("PUT", f"{NS}/instance/beat", {"serviceName": "s", "beat": '{"ip":"10.0.0.1","port":80,"metadata":[1]}'},
     "Param 'beat' is illegal"),
    ("PUT", f"{NS}/instance/beat", {"serviceName": "s", "beat": '{"ip":"10.0.0.1","port":1e999}'},
     "Param 'beat' is illegal"),
    ("PUT", f"{NS}/instance/beat", {"serviceName": "s", "beat": '{"ip":"10.0.0.1","port":80,"weight":1' + "0" * 400 + "}"},
     "Param 'beat' is illegal"),
    ("PUT", f"{NS}/instance/beat", {"serviceName": "s", "ip": "10.0.0.1"}, "Param 'port' is required."),
    ("GET", f"{NS}/operator/servers", {"healthy": "x"}, "Param 'healthy' is illegal"),
    # JSON nested deeper than the interpreter's recursion limit (RecursionError, not ValueError)
    ("PUT", f"{NS}/instance/beat", {"serviceName": "s", "beat": "[" * 2000}, "Param 'beat' is illegal"),
    ("POST", f"{NS}/service", {"serviceName": "s3", "selector": '{"type":' + "[" * 2000}, "Param 'selector' is illegal"),
    ("POST", f"{NS}/instance", {"serviceName": "s", "ip": "10.0.0.1", "port": "80", "metadata": '{"a":' + "[" * 2000},
     "metadata format incorrect"),
]


@pytest.mark.parametrize(("method", "path", "params", "text"), BAD_OTHERS, ids=range(len(BAD_OTHERS)))
def test_bad_parameters_get_400_saying_what_is_wrong(
    cluster: Cluster, method: str, path: str, params: dict[str, str], text: str
) -> None:
    response = request(cluster.ports[2], method, path, {**params, "accessToken": cluster.access_token})
    assert response.status == 400, (response.status, response.text)
    assert text in response.text, response.text


def test_instances_per_service_are_bounded(cluster: Cluster) -> None:
    token = cluster.access_token
    for i in range(MAX_INSTANCES):
        params = {"serviceName": "bounded", "ip": f"10.7.{i // 250}.{i % 250 + 1}", "port": "80", "accessToken": token}
        response = request(cluster.ports[i % NODES], "POST", f"{NS}/instance", params)
        assert (response.status, response.text) == (200, "ok")
    params = {"serviceName": "bounded", "ip": "10.8.0.1", "port": "80", "accessToken": token}
    response = request(cluster.ports[0], "POST", f"{NS}/instance", params)
    assert response.status == 400 and f"already has {MAX_INSTANCES} instances" in response.text, response.text
    # a beat cannot sneak one in by re-registering
    beat = json.dumps({"ip": "10.8.0.2", "port": 80})
    response = request(cluster.ports[1], "PUT", f"{NS}/instance/beat", {"serviceName": "bounded", "beat": beat,
                                                                       "accessToken": token})
    assert response.status == 400, response.text
    # re-registering an existing one is fine
    params = {"serviceName": "bounded", "ip": "10.7.0.1", "port": "80", "accessToken": token}
    assert request(cluster.ports[2], "POST", f"{NS}/instance", params).status == 200


# ------------------------------------------------------------------------------------------------
# HTTP limits, from the real node flags
# ------------------------------------------------------------------------------------------------
def test_http_limits_come_from_the_node_settings(cluster: Cluster) -> None:
    limits = cluster.servers[0].limits
    assert limits.max_body_bytes == MAX_BODY
    port = cluster.ports[0]
    token = cluster.access_token
    # body over --max-body-bytes: 413 from the Content-Length alone, before the body is read
    body = b"metadata=" + b"x" * MAX_BODY
    response = exchange(port, build_request("POST", f"{NS}/instance?accessToken={token}", body=body,
                                            headers={"Content-Type": "application/x-www-form-urlencoded"}))
    assert response is not None and response.status == 413
    # just under the limit: the handler sees it (and refuses the metadata itself)
    body = b"serviceName=s&ip=10.0.0.1&port=80&metadata=k%3D" + b"v" * (MAX_BODY - 100)
    response = exchange(port, build_request("POST", f"{NS}/instance?accessToken={token}", body=body,
                                            headers={"Content-Type": "application/x-www-form-urlencoded"}))
    assert response is not None and response.status == 400 and "metadata is too large" in response.text
    # chunked bodies are bounded too
    chunk = b"%x\r\n%s\r\n" % (MAX_BODY, b"a" * MAX_BODY)
    data = (f"POST {NS}/instance HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").encode() + chunk * 2
    response = exchange(port, data + b"0\r\n\r\n")
    assert response is not None and response.status == 413
    # request line and header block
    response = exchange(port, build_request("GET", f"{NS}/instance/list?serviceName=" + "a" * limits.max_request_line_bytes))
    assert response is not None and response.status == 414
    response = exchange(port, build_request("GET", "/healthz", headers={"X-Big": "b" * (limits.max_header_bytes + 1)}))
    assert response is not None and response.status == 431
    many = {f"X-H{i}": "v" for i in range(limits.max_header_count + 1)}
    response = exchange(port, build_request("GET", "/healthz", headers=many))
    assert response is not None and response.status == 431
    assert request(port, "GET", "/healthz").status == 200


async def test_node_flags_reach_the_http_limits() -> None:
    server = NodeServer(parse_settings([
        "--port", "18848", "--max-body-bytes", "1234", "--max-connections", "7",
        "--request-timeout-ms", "2500", "--idle-timeout-ms", "3500",
    ]))
    assert (server.limits.max_body_bytes, server.limits.max_connections) == (1234, 7)
    assert (server.limits.request_timeout_ms, server.limits.idle_timeout_ms) == (2500, 3500)


# ------------------------------------------------------------------------------------------------
# no HTTP route is peer-internal
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PEER_INTERNAL)
def test_peer_internal_endpoints_do_not_exist(cluster: Cluster, path: str) -> None:
    for headers in [{}, {"User-Agent": "Nacos-Server:1.4.2"},
                    {"User-Agent": "Nacos-Server:1.4.2", "Nacos-Server": "1.4.2", "serverIdentity": "security"}]:
        for method in ["GET", "PUT", "POST", "DELETE"]:
            for params in [{}, {"accessToken": cluster.access_token}]:
                response = request(cluster.ports[0], method, path, {**params, "key": "public##DEFAULT_GROUP@@s"},
                                   headers=headers)
                if not params and cluster.access_token:  # with auth on, no token learns nothing, not even a 501
                    assert (response.status, response.text) == (403, "user not found!"), (path, method, headers)
                    continue
                assert response.status == 501, (path, method, headers, response.status)
                assert response.text.startswith("no such api:"), response.text


# ------------------------------------------------------------------------------------------------
# real processes
# ------------------------------------------------------------------------------------------------
def test_real_nodes_survive_malformed_peer_frames(tmp_path: Path) -> None:
    offset = PEER_PORT_OFFSET
    ports = free_ports(2)
    peers = [f"127.0.0.1:{p}" for p in ports]
    secret = os.urandom(16).hex()
    nodes = [LocalNode(f"p{i}", port, peers, secret, log_path=tmp_path / f"p{i}.log", hermetic_env=True)
             for i, port in enumerate(ports)]
    try:
        for node in nodes:
            node.start()

        def ready(port: int) -> bool:
            try:
                return request(port, "GET", "/readyz").status == 200
            except OSError:
                return False

        wait_until(lambda: all(ready(p) for p in ports), "every node ready", timeout_s=30)
        rng = random.Random(1234)
        frames = [
            b"",
            b"\x00",
            b"\xff\xff\xff\xff",  # a huge length prefix
            b"\x7f\xff\xff\xff" + b"x" * 100,
            b"\x00\x00\x00\x10" + b"short",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"\x00\x00\x00\x05hello",
            *(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300))) for _ in range(40)),
        ]
        for frame in frames:
            with socket.create_connection(("127.0.0.1", ports[0] + offset), timeout=5) as sock:
                try:
                    sock.sendall(frame)
                    sock.shutdown(socket.SHUT_WR)
                    sock.recv(4096)
                except OSError:
                    pass
        # Handshakes by someone who does not know the secret, posing as the other member: each gets a
        # challenge, fails the proof and is hung up on without a welcome; the real link is not disturbed.
        import msgpack

        from cluster.node.peerlink import PROTOCOL_VERSION

        def frame_of(obj: object) -> bytes:
            payload: bytes = msgpack.packb(obj, use_bin_type=True)
            return len(payload).to_bytes(4, "big") + payload

        for proof in [["proof", [os.urandom(32)]], ["proof", os.urandom(32)], ["proof", b""], ["proof", "x"],
                      ["welcome"], ["proof"], [], 7]:
            with socket.create_connection(("127.0.0.1", ports[0] + offset), timeout=5) as sock:
                sock.sendall(frame_of(["hello", PROTOCOL_VERSION, "p1", f"127.0.0.1:{ports[1] + offset}",
                                       os.urandom(32)]))
                received = b""
                try:
                    while len(received) < 4 or len(received) < 4 + int.from_bytes(received[:4], "big"):
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        received += chunk
                    challenge = msgpack.unpackb(received[4:])
                    assert challenge[0] == "challenge" and challenge[1] == "p0", challenge
                    sock.sendall(frame_of(proof))
                    rest = b""
                    while chunk := sock.recv(4096):
                        rest += chunk
                except (ConnectionResetError, BrokenPipeError):
                    rest = b""
                assert b"welcome" not in rest
        for bad_hello in [["hello", PROTOCOL_VERSION + 1, "x", "127.0.0.1:1", os.urandom(32)],
                          ["hello", 1, "x", "127.0.0.1:1", os.urandom(32)],  # the first protocol: refused
                          ["hello", PROTOCOL_VERSION, "x", "nope", b"short"],
                          ["hello", PROTOCOL_VERSION, "x" * 5000, "127.0.0.1:1", os.urandom(32)], {"hello": 1}]:
            with socket.create_connection(("127.0.0.1", ports[0] + offset), timeout=5) as sock:
                try:
                    sock.sendall(frame_of(bad_hello))
                    assert sock.recv(4096) == b""  # closed without a challenge
                except ConnectionResetError:
                    pass
        # many half-open connections that never say anything
        idle = [socket.create_connection(("127.0.0.1", ports[0] + offset), timeout=5) for _ in range(50)]
        for sock in idle:
            sock.close()
        for node in nodes:
            assert node.running(), node.log_tail()
        assert all(request(p, "GET", "/healthz").status == 200 for p in ports)
        params = {"serviceName": "peer-fuzz", "ip": "10.3.3.3", "port": "80"}
        assert request(ports[0], "POST", f"{NS}/instance", params).text == "ok"

        def seen_on_other() -> bool:
            body = request(ports[1], "GET", f"{NS}/instance/list", {"serviceName": "peer-fuzz"}).json()
            return isinstance(body, dict) and any(h["ip"] == "10.3.3.3" for h in body["hosts"])

        wait_until(seen_on_other, "the write seen on the other node", timeout_s=30)
    finally:
        for node in nodes:
            node.stop(10)


# ------------------------------------------------------------------------------------------------
# the single-parameter sweep: every route x every parameter it reads x every adversarial value
# ------------------------------------------------------------------------------------------------
def sweep_cases() -> Iterator[tuple[str, str, dict[str, str]]]:
    for method, path in ROUTE_PAIRS:
        names = ROUTE_PARAMS.get(path, PARAM_NAMES)
        base = {name: VALID[name] for name in names if name in VALID}
        yield method, path, base
        for name in names:
            yield method, path, {k: v for k, v in base.items() if k != name}
            for value in SPECIAL_VALUES:
                if path == WATCH_PATH and name == "timeoutMs" and value not in SAFE_TIMEOUTS:
                    continue
                yield method, path, {**base, name: value}
        if "beat" in names:
            for field_name in [*VALID_BEAT, "ephemeral"]:
                others = {k: v for k, v in VALID_BEAT.items() if k != field_name}
                yield method, path, {**base, "beat": beat_json(others)}
                for json_value in JSON_VALUES:
                    yield method, path, {**base, "beat": beat_json({**VALID_BEAT, field_name: json_value})}


async def test_single_parameter_sweep_never_5xx() -> None:
    """Calls the handlers directly (not through sockets, so ~10k requests take a few seconds) on a 2-node cluster."""
    from cluster.http import Request

    network = MemoryNetwork()
    peers = "127.0.0.1:18848,127.0.0.1:18849"
    async with trio.open_nursery() as nursery:
        await nursery.start(network.run)
        servers = [
            (await start_node(nursery, network, [
                "--node-id", f"s{i}", "--port", str(18848 + i), "--peers", peers,
                "--cluster-secret", "sweep-cluster-secret-0123456789abcdef",
                "--auth", "--token-secret", SECRET, "--admin-password", PASSWORD,
                "--max-instances-per-service", str(MAX_INSTANCES),
            ]))[0]
            for i in range(2)
        ]
        await wait_ready(servers)
        login = Request("POST", "/nacos/v1/auth/login", f"username=nacos&password={quote(PASSWORD)}", {}, b"",
                        ("127.0.0.1", 1))
        token = json.loads((await servers[0].api(login)).body)["accessToken"]
        count = 0
        statuses: dict[int, int] = {}
        for method, path, params in sweep_cases():
            count += 1
            headers = {"authorization": f"Bearer {token}", "user-agent": "Nacos-Python-Client:v0.1.17"}
            if count % 2 and params.get("clientIP", "127.0.0.1") == "127.0.0.1":
                # a push-capable agent: instance/list registers a UDP subscriber (pushes go to loopback only)
                headers["user-agent"] = "Nacos-Java-Client:v1.4.2"
            query = urlencode(params, quote_via=quote)
            request_ = Request(method, path, query, headers, b"", ("127.0.0.1", 2))
            try:
                response = await servers[count % 2].api(request_)
            except Exception as exc:  # would be a 500 on the wire
                raise AssertionError(f"{method} {path} {params!r}: {exc!r}") from exc
            statuses[response.status] = statuses.get(response.status, 0) + 1
            assert response.status < 500, (method, path, params, response.status, response.body[:200])
        assert count > 5000 and statuses.get(200, 0) > 1000 and statuses.get(400, 0) > 1000, statuses
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------------------------------------
# regressions: over-long group@@name keys broke peer links (codec refuses keys over 1024 characters)
# and crashed the push task (it rebuilt the list with serviceName=group@@name)
# ------------------------------------------------------------------------------------------------
def test_overlong_group_name_is_refused(cluster: Cluster) -> None:
    params = {"serviceName": "s", "groupName": "g" * 1100, "ip": "10.0.0.1", "port": "80",
              "accessToken": cluster.access_token}
    response = request(cluster.ports[0], "POST", f"{NS}/instance", params)
    assert response.status == 400, response.text


async def test_push_survives_a_long_grouped_name() -> None:
    from cluster.http import Request

    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        await nursery.start(network.run)
        server, _ = await start_node(nursery, network, ["--node-id", "p0", "--port", "18848"])
        await wait_ready([server])
        key = {"serviceName": "s" * 200, "groupName": "g" * 200}
        subscribe = Request("GET", f"{NS}/instance/list", urlencode({**key, "udpPort": "9", "clientIP": "127.0.0.1"}),
                            {"user-agent": "Nacos-Java-Client:v1.4.2"}, b"", ("127.0.0.1", 1))
        assert (await server.api(subscribe)).status == 400  # group@@name over 256 characters is refused
        register = Request("POST", f"{NS}/instance", urlencode({**key, "ip": "10.0.0.1", "port": "80"}), {}, b"",
                           ("127.0.0.1", 1))
        assert (await server.api(register)).status == 400
        healthz = Request("GET", "/healthz", "", {}, b"", ("127.0.0.1", 1))
        assert (await server.api(healthz)).status == 200
        nursery.cancel_scope.cancel()
