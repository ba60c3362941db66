"""Token auth (cluster/api/auth.py): the token format, login, the guard, the throttle, and nacos-sdk-python
0.1.17 against an auth-enabled node. Real sockets on 127.0.0.1; one in-process node (no peers)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.api.auth import (
    LOGIN_PATHS,
    OPEN_TOKEN,
    Authenticator,
    LoginThrottle,
    TokenCodec,
    TokenStatus,
    authenticator_for,
)
from cluster.api.push import PushService
from cluster.api.readiness import ReadinessGate
from cluster.api.render import ListRenderer
from cluster.api.routes import NamingApi
from cluster.api.watch import WatchService
from cluster.http import HttpStats, serve_http
from cluster.node.pump import NodeRuntime
from cluster.node.settings import NodeSettings, parse_settings
from cluster.node.wiring import NodeServer

SECRET = "s3cret-token-key-for-tests-0123456789abcdef"
OTHER_SECRET = "another-token-key-for-tests-0123456789abcdef"
PASSWORD = "correct horse battery staple"
NS = "/nacos/v1/ns"
PROTECTED = [
    ("POST", f"{NS}/instance"),
    ("DELETE", f"{NS}/instance"),
    ("PUT", f"{NS}/instance"),
    ("PATCH", f"{NS}/instance"),
    ("GET", f"{NS}/instance"),
    ("GET", f"{NS}/instance/list"),
    ("PUT", f"{NS}/instance/beat"),
    ("POST", f"{NS}/service"),
    ("PUT", f"{NS}/service"),
    ("DELETE", f"{NS}/service"),
    ("GET", f"{NS}/service"),
    ("GET", f"{NS}/service/list"),
    ("GET", f"{NS}/catalog/services"),
    ("GET", f"{NS}/operator/servers"),
    ("GET", f"{NS}/operator/metrics"),
    ("GET", f"{NS}/operator/distro/server"),
    # served by cluster.api.push / cluster.api.watch: guarded like everything that is not explicitly open
    ("GET", f"{NS}/operator/push/state"),
    ("GET", f"{NS}/service/subscribers"),
    ("GET", f"{NS}/instance/watch"),
]
INSTANCE = {"serviceName": "orders", "ip": "10.0.0.1", "port": "8080"}


class FakeClock:
    """Wall-clock seconds under the test's control."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def settings_for(*extra: str) -> NodeSettings:
    return parse_settings(
        ["--port", "18848", "--auth", "--token-secret", SECRET, "--admin-password", PASSWORD, *extra]
    )


@dataclass
class AuthNode:
    client: httpx.AsyncClient
    port: int
    api: NamingApi
    auth: Authenticator | None
    clock: FakeClock
    http_stats: HttpStats = field(default_factory=HttpStats)

    async def login(self, user: str = "nacos", password: str = PASSWORD) -> str:
        response = await self.client.post("/nacos/v1/auth/login", params={"username": user, "password": password})
        assert response.status_code == 200, response.text
        token = response.json()["accessToken"]
        assert isinstance(token, str)
        return token


@asynccontextmanager
async def auth_node(
    node_settings: NodeSettings | None = None, *, throttle: LoginThrottle | None = None, enable: bool = True,
    lane: bool = False,
) -> AsyncIterator[AuthNode]:
    """One ready node with auth (fake clock) on 127.0.0.1:<free port>; with ``lane``, keep-alive requests go
    through the API's fast handler in the keep-alive lane, as NodeServer wires it."""
    node_settings = node_settings or settings_for()
    clock = FakeClock()
    runtime = NodeRuntime("n1", node_settings.core, address="127.0.0.1:18848")
    renderer = ListRenderer(runtime)
    auth = authenticator_for(node_settings, clock=clock, throttle=throttle) if enable else None
    api = NamingApi(  # as NodeServer builds it, with a fake clock for the tokens (push's socket not opened)
        runtime, renderer, readiness=ReadinessGate(runtime.node), auth=auth,
        push=PushService(runtime, renderer), watch=WatchService(runtime, renderer),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        stats = HttpStats()
        port = await nursery.start(partial(serve_http, api, "127.0.0.1", 0, stats=stats,
                                           fast=api.answer_now if lane else None))
        with trio.fail_after(10):
            await runtime.ready_event.wait()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield AuthNode(client, port, api, auth, clock, stats)
        nursery.cancel_scope.cancel()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(payload: bytes, secret: str = SECRET) -> str:
    """A token whose MAC is right for ``payload`` (to test what happens after the MAC check)."""
    payload_b64 = b64(payload)
    mac = hmac.new(secret.encode(), b"distro-token-v1." + payload_b64.encode(), hashlib.sha256).digest()
    return f"{payload_b64}.{b64(mac)}"


def jwt_hs256(claims: dict[str, object], secret: str = SECRET, alg: str = "HS256") -> str:
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest())
    return f"{header}.{body}.{signature}"


# ------------------------------------------------------------------------------------------------
# the token format
# ------------------------------------------------------------------------------------------------
def test_token_round_trip_and_expiry() -> None:
    clock = FakeClock()
    codec = TokenCodec(SECRET.encode(), 100, clock=clock)
    token = codec.issue("nacos")
    assert codec.check(token).status is TokenStatus.VALID
    assert codec.check(token).subject == "nacos"
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert payload == {"sub": "nacos", "iat": int(clock.now), "exp": int(clock.now) + 100, "v": 1}
    clock.now += 99.5
    assert codec.check(token).status is TokenStatus.VALID
    clock.now += 0.5
    assert codec.check(token).status is TokenStatus.EXPIRED


def test_codec_refuses_weak_settings() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenCodec(b"short", 100)
    with pytest.raises(ValueError, match="positive"):
        TokenCodec(SECRET.encode(), 0)
    with pytest.raises(ValueError, match="admin"):
        Authenticator(TokenCodec(SECRET.encode(), 10), "nacos", "")


def test_bad_tokens_are_invalid() -> None:
    clock = FakeClock()
    codec = TokenCodec(SECRET.encode(), 100, clock=clock)
    good = codec.issue("nacos")
    payload_b64, mac = good.split(".")
    future = int(clock.now) + 1000
    claims = {"sub": "nacos", "exp": future, "iat": int(clock.now), "v": 1}
    flipped_mac = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    tampered_payload = b64(json.dumps({**claims, "sub": "root"}).encode())
    bad = [
        "",
        "None",  # what nacos-sdk-python sends when login gave no token
        "null",
        payload_b64,
        f"{payload_b64}.",  # empty signature
        f".{mac}",
        f"{payload_b64}.{mac}.",
        f"{payload_b64}.{mac}=",  # padding is not part of the format
        f"{payload_b64}.{mac[:-1]}",  # wrong length
        f"{payload_b64}.{mac}A",
        f"{payload_b64}.{flipped_mac}",
        f"{payload_b64}.{mac[:-1]}{'B' if mac[-1] == 'A' else 'A'}",  # last char: non-canonical bits too
        f"{payload_b64}==.{mac}",
        f"{tampered_payload}.{mac}",
        f"{payload_b64}.{mac[:-1]}+",  # standard base64 alphabet
        f"{payload_b64}.{mac[:-1]}/",
        f"{payload_b64} .{mac}",
        f"{payload_b64}\u00e9.{mac}",
        good.upper(),
        TokenCodec(OTHER_SECRET.encode(), 100, clock=clock).issue("nacos"),  # another secret
        forge(json.dumps(claims).encode(), OTHER_SECRET),
        # JWTs are not accepted, whatever their algorithm: no "alg" to play games with.
        jwt_hs256(claims),
        jwt_hs256(claims, alg="none").rpartition(".")[0] + ".",
        jwt_hs256(claims, alg="none"),
        # correctly MACed, but not a valid payload
        forge(b"not json"),
        forge(b"\xff\xfe"),
        forge(b"[]"),
        forge(b"{}"),
        forge(json.dumps({**claims, "v": 2}).encode()),
        forge(json.dumps({**claims, "v": "1"}).encode()),
        forge(json.dumps({k: v for k, v in claims.items() if k != "v"}).encode()),
        forge(json.dumps({**claims, "sub": ""}).encode()),
        forge(json.dumps({**claims, "sub": 7}).encode()),
        forge(json.dumps({**claims, "exp": str(future)}).encode()),
        forge(json.dumps({**claims, "exp": float(future)}).encode()),
        forge(json.dumps({**claims, "exp": True}).encode()),
        forge(json.dumps({**claims, "exp": None}).encode()),
        forge(b'{"sub":"nacos","exp":1e999,"v":1}'),
        forge(b'{"sub":"nacos","exp":NaN,"v":1}'),
        "A" * 5000 + "." + mac,
        "." * 44,
    ]
    for token in bad:
        assert codec.check(token).status is TokenStatus.INVALID, token
    # The forge helper itself is right: the same construction with the real claims is accepted.
    assert codec.check(forge(json.dumps(claims).encode())).status is TokenStatus.VALID
    assert codec.check(forge(json.dumps({**claims, "exp": int(clock.now)}).encode())).status is TokenStatus.EXPIRED


@settings(max_examples=200)
@given(st.one_of(st.text(max_size=200), st.from_regex(r"[A-Za-z0-9_-]{0,80}\.[A-Za-z0-9_-]{0,50}", fullmatch=True)))
def test_random_tokens_are_never_valid_and_never_raise(token: str) -> None:
    codec = TokenCodec(SECRET.encode(), 100)
    assert codec.check(token).status is TokenStatus.INVALID


def test_credentials_compare() -> None:
    auth = Authenticator(TokenCodec(SECRET.encode(), 10), "nacos", PASSWORD)
    assert auth.credentials_ok("nacos", PASSWORD)
    assert not auth.credentials_ok("nacos", PASSWORD + " ")
    assert not auth.credentials_ok("nacos", "")
    assert not auth.credentials_ok("Nacos", PASSWORD)
    assert not auth.credentials_ok("", PASSWORD)
    assert not auth.credentials_ok(PASSWORD, "nacos")


# ------------------------------------------------------------------------------------------------
# the throttle
# ------------------------------------------------------------------------------------------------
def test_throttle_blocks_after_failures_and_forgets_after_the_window() -> None:
    clock = FakeClock(0.0)
    throttle = LoginThrottle(3, 60.0, max_user_failures=5, clock=clock)
    for _ in range(3):
        assert not throttle.blocked("1.2.3.4", "nacos")
        throttle.failed("1.2.3.4", "nacos")
    assert throttle.blocked("1.2.3.4", "nacos") and throttle.blocked("1.2.3.4", "other")  # the address is out
    assert not throttle.blocked("5.6.7.8", "nacos")
    throttle.failed("5.6.7.8", "nacos")
    throttle.failed("5.6.7.8", "nacos")
    assert throttle.blocked("9.9.9.9", "nacos")  # the user name is out: 5 failures from any address
    assert not throttle.blocked("9.9.9.9", "other")
    clock.now = 59.9
    assert throttle.blocked("1.2.3.4", "nacos")
    clock.now = 60.0
    assert not throttle.blocked("1.2.3.4", "nacos") and not throttle.blocked("9.9.9.9", "nacos")


def test_a_trusted_address_is_held_to_its_own_failures_only() -> None:
    clock = FakeClock(0.0)
    throttle = LoginThrottle(3, 60.0, max_user_failures=5, trust_s=3600.0, clock=clock)
    throttle.succeeded("1.2.3.4", "nacos")
    for i in range(10):
        throttle.failed(f"10.0.0.{i}", "nacos")
        throttle.failed("1.2.3.4", "guess-another-name")
    assert throttle.blocked("10.0.0.99", "nacos") and throttle.blocked("1.2.3.4", "someone")
    assert not throttle.blocked("1.2.3.4", "nacos")
    for _ in range(3):
        throttle.failed("1.2.3.4", "nacos")
    assert throttle.blocked("1.2.3.4", "nacos")
    clock.now = 60.0
    assert not throttle.blocked("1.2.3.4", "nacos")
    clock.now = 3600.0  # the trust lapsed: the address is an address like any other again
    throttle.failed("10.0.0.1", "nacos")
    assert throttle.sizes()["trusted"] == 1 and not throttle.blocked("1.2.3.4", "nacos")
    assert throttle.sizes()["trusted"] == 0


def test_throttle_is_bounded() -> None:
    clock = FakeClock(0.0)
    throttle = LoginThrottle(2, 60.0, max_addresses=100, max_users=50, max_trusted=10, clock=clock)
    for i in range(1000):
        address = f"10.0.{i // 256}.{i % 256}"
        throttle.failed(address, f"user-{i}" * 100)  # long names are kept as 16-byte digests
        throttle.succeeded(address, "nacos")
        clock.now += 0.01
        assert throttle.sizes() == {"addresses": min(i + 1, 100), "users": min(i + 1, 50), "trusted": min(i + 1, 10)}
    assert throttle.blocked("10.0.3.231", "x") is False  # one failure only
    throttle.failed("10.0.3.231", "x")
    assert throttle.blocked("10.0.3.231", "x")
    clock.now += 120
    throttle.failed("9.9.9.9", "y")  # the maps are full: expired entries are dropped first
    assert throttle.sizes() == {"addresses": 1, "users": 1, "trusted": 10}


# ------------------------------------------------------------------------------------------------
# login and the guard over HTTP
# ------------------------------------------------------------------------------------------------
async def test_login_answers_like_nacos() -> None:
    async with auth_node() as node:
        for path in LOGIN_PATHS:
            response = await node.client.post(path, params={"username": "nacos", "password": PASSWORD})
            assert response.status_code == 200
            body = response.json()
            assert set(body) == {"accessToken", "tokenTtl", "globalAdmin"}
            assert body["tokenTtl"] == 18000 and body["globalAdmin"] is True
            assert response.headers["authorization"] == f"Bearer {body['accessToken']}"
            assert response.headers["cache-control"] == "no-store"
        # the Java client: username in the query, password in a form body
        response = await node.client.post(
            "/nacos/v1/auth/login", params={"username": "nacos"}, data={"password": PASSWORD}
        )
        assert response.status_code == 200
        for user, password in [("nacos", "wrong"), ("admin", PASSWORD), ("nacos", PASSWORD.upper())]:
            response = await node.client.post("/nacos/v1/auth/login", data={"username": user, "password": password})
            assert (response.status_code, response.text) == (403, "unknown user!")
        response = await node.client.post("/nacos/v1/auth/login", params={"username": "nacos"})
        assert (response.status_code, response.text) == (400, "Param 'password' is required.")
        # POST only: a GET login would put the password in every access log by design
        response = await node.client.get("/nacos/v1/auth/login", params={"username": "nacos", "password": PASSWORD})
        assert response.status_code == 501


async def test_every_naming_route_needs_a_token() -> None:
    async with auth_node() as node:
        token = await node.login()
        expired = TokenCodec(SECRET.encode(), 1, clock=lambda: node.clock.now - 10).issue("nacos")
        foreign = TokenCodec(OTHER_SECRET.encode(), 100).issue("nacos")
        for method, path in PROTECTED:
            for params, headers, text in [
                ({}, {}, "user not found!"),
                ({"accessToken": ""}, {}, "user not found!"),
                ({"accessToken": "None"}, {}, "token invalid!"),
                ({"accessToken": foreign}, {}, "token invalid!"),
                ({"accessToken": expired}, {}, "token expired!"),
                ({}, {"Authorization": f"Bearer {foreign}"}, "token invalid!"),
                ({}, {"Authorization": f"Bearer {expired}"}, "token expired!"),
                ({"accessToken": token}, {"Authorization": f"Bearer {foreign}"}, "token invalid!"),  # header first
                ({}, {"Authorization": f"Basic {token}"}, "user not found!"),
            ]:
                response = await node.client.request(method, path, params={**INSTANCE, **params}, headers=headers)
                assert (response.status_code, response.text) == (403, text), (method, path, params, headers)
            # a valid token passes (whatever the route then answers, it is not a 403)
            response = await node.client.request(method, path, params={**INSTANCE, "accessToken": token})
            assert response.status_code != 403, (method, path, response.text)
            response = await node.client.request(
                method, path, params=INSTANCE, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code != 403, (method, path, response.text)
            # the token in a form body works too
            if method != "GET":
                response = await node.client.request(
                    method, path, params=INSTANCE, content=f"accessToken={token}".encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                assert response.status_code != 403, (method, path, response.text)
            # HEAD is a GET and is guarded the same way
            if method == "GET":
                response = await node.client.head(path, params=INSTANCE)
                assert response.status_code == 403
        assert node.auth is not None and node.auth.counts["refused_no_token"] > 0


async def test_open_routes_stay_open() -> None:
    async with auth_node() as node:
        for path in ["/healthz", "/readyz", "/metrics", "/healthz/"]:
            response = await node.client.get(path)
            assert response.status_code == 200, path
        metrics = (await node.client.get("/metrics")).text
        assert 'distro_auth_logins_total{result="ok"} 0' in metrics
        # trailing slashes, percent-encoding and dot segments do not reach a protected route unguarded
        for path in [f"{NS}/instance/list/", f"{NS}/instance/%6Cist", f"{NS}//instance/list", f"{NS}/./instance/list"]:
            response = await node.client.get(path, params={"serviceName": "a"})
            assert response.status_code in (403, 501), (path, response.status_code)


async def test_unknown_routes_cannot_be_enumerated_without_a_token() -> None:
    # Issue 14, finding 5: the 501 of an unknown route came before the auth check, so route names could be
    # probed without a token. Now every route that is not open answers the same 403 without a token.
    unknown = [
        ("GET", f"{NS}/nonexistent"), ("POST", f"{NS}/distro/datum"), ("PUT", f"{NS}/instance/statuses"),
        ("GET", "/nacos/v1/cs/configs"), ("DELETE", f"{NS}/instance/list"), ("GET", "/v1/console/server/state"),
    ]
    async with auth_node() as node:
        token = await node.login()
        for method, path in unknown:
            response = await node.client.request(method, path)
            assert (response.status_code, response.text) == (403, "user not found!"), (method, path)
            response = await node.client.request(method, path, params={"accessToken": token})
            assert response.status_code == 501, (method, path)
        # an open path answers for an unknown method as before: nothing there to hide
        assert (await node.client.post("/healthz")).status_code == 501


async def test_no_header_grants_anything() -> None:
    """CVE-2021-29441: Nacos 1.4.0 let any request whose User-Agent started with Nacos-Server through."""
    spoofed: list[dict[str, str]] = [
        {"User-Agent": "Nacos-Server"},
        {"User-Agent": "Nacos-Server:1.4.2"},
        {"User-Agent": "Nacos-Server", "Nacos-Server": "1.4.2", "Client-Version": "1.4.2"},
        {"serverIdentity": "security"},
        {"serverIdentity": "security", "User-Agent": "Nacos-Server"},
        {"Request-Source": "127.0.0.1:8848"},
        {"X-Forwarded-For": "127.0.0.1"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer None"},
        {"Authorization": "Basic bmFjb3M6bmFjb3M="},
        {"Cookie": "accessToken=x"},
    ]
    async with auth_node() as node:
        for headers in spoofed:
            for method, path in PROTECTED:
                response = await node.client.request(method, path, params=INSTANCE, headers=headers)
                assert response.status_code == 403, (headers, method, path)
            # username/password parameters log in on the fly (as Nacos, issue 12), but only right ones
            response = await node.client.post(
                f"{NS}/instance", params={**INSTANCE, "username": "nacos", "password": "wrong"}, headers=headers
            )
            assert response.status_code == 403
        view = node.api.node.view
        from distro.model import service_key

        assert view(service_key(None, None, "orders")) is None  # nothing was registered


async def test_token_expires_and_relogin_works() -> None:
    async with auth_node(settings_for("--token-ttl-s", "60")) as node:
        token = await node.login()
        params = {"serviceName": "orders", "accessToken": token}
        assert (await node.client.get(f"{NS}/instance/list", params=params)).status_code == 200
        node.clock.now += 59
        assert (await node.client.get(f"{NS}/instance/list", params=params)).status_code == 200
        node.clock.now += 1
        response = await node.client.get(f"{NS}/instance/list", params=params)
        assert (response.status_code, response.text) == (403, "token expired!")
        fresh = await node.login()
        response = await node.client.get(f"{NS}/instance/list", params={**params, "accessToken": fresh})
        assert response.status_code == 200


async def test_token_secret_rotation_invalidates_old_tokens() -> None:
    async with auth_node() as node:
        old = await node.login()
    rotated = replace(settings_for(), token_secret=OTHER_SECRET)
    async with auth_node(rotated) as node:
        response = await node.client.get(f"{NS}/instance/list", params={"serviceName": "a", "accessToken": old})
        assert (response.status_code, response.text) == (403, "token invalid!")
        new = await node.login()
        response = await node.client.get(f"{NS}/instance/list", params={"serviceName": "a", "accessToken": new})
        assert response.status_code == 200


async def test_a_previous_token_secret_keeps_its_tokens_valid_until_they_expire() -> None:
    async with auth_node() as node:
        old = await node.login()
    rotated = replace(settings_for(), token_secret=OTHER_SECRET, previous_token_secrets=(SECRET,))
    async with auth_node(rotated) as node:
        response = await node.client.get(f"{NS}/instance/list", params={"serviceName": "a", "accessToken": old})
        assert response.status_code == 200, response.text
        new = await node.login()
        assert new != old
    # the next step of the rotation drops the old secret: the new token stays valid, the old one does not
    async with auth_node(replace(settings_for(), token_secret=OTHER_SECRET)) as node:
        for token, expected in ((new, 200), (old, 403)):
            response = await node.client.get(f"{NS}/instance/list", params={"serviceName": "a", "accessToken": token})
            assert response.status_code == expected, response.text


async def test_renamed_admin_user_invalidates_its_tokens() -> None:
    async with auth_node() as node:
        old = await node.login()
    async with auth_node(settings_for("--admin-user", "ops")) as node:
        response = await node.client.get(f"{NS}/instance/list", params={"serviceName": "a", "accessToken": old})
        assert (response.status_code, response.text) == (403, "token invalid!")
        await node.login("ops")


async def test_failed_logins_are_throttled() -> None:
    clock = FakeClock(0.0)
    async with auth_node(throttle=LoginThrottle(5, 60.0, clock=clock)) as node:
        for _ in range(5):
            response = await node.client.post("/nacos/v1/auth/login", params={"username": "nacos", "password": "x"})
            assert response.status_code == 403
        # even the right password is refused now: a 200 would tell the guesser it found it
        response = await node.client.post("/nacos/v1/auth/login", params={"username": "nacos", "password": PASSWORD})
        assert response.status_code == 429
        assert node.auth is not None and node.auth.counts["login_throttled"] == 1
        clock.now += 61
        await node.login()
        metrics = (await node.client.get("/metrics")).text
        assert 'distro_auth_logins_total{result="denied"} 5' in metrics
        assert 'distro_auth_logins_total{result="throttled"} 1' in metrics
        assert 'distro_auth_throttle_entries{map="trusted"} 1' in metrics


async def login_from(port: int, address: str, user: str, password: str) -> int:
    """The status of one login sent from ``address`` (a loopback address other than 127.0.0.1)."""
    sock = trio.socket.socket()
    with sock:
        await sock.bind((address, 0))
        await sock.connect(("127.0.0.1", port))
        body = f"username={user}&password={password}".encode()
        await sock.send(
            b"POST /nacos/v1/auth/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        head = b""
        while b"\r\n" not in head:
            chunk = await sock.recv(4096)
            assert chunk, head
            head += chunk
    return int(head.split(b" ", 2)[1])


async def test_guessing_from_many_addresses_is_capped_per_user() -> None:
    # Issue 14, finding 5: the throttle counted per address only, so 38 addresses guessed 10 times a minute
    # each. Now the failures against one user name are counted over every address as well.
    clock = FakeClock(0.0)
    throttle = LoginThrottle(10, 60.0, max_user_failures=20, clock=clock)
    async with auth_node(throttle=throttle) as node:
        statuses = [
            await login_from(node.port, f"127.0.1.{i}", "nacos", f"guess-{i}-{j}") for i in range(1, 39) for j in range(10)
        ]
        assert statuses.count(403) == 20  # passwords actually checked: the user's budget, not 38 x 10
        assert statuses.count(429) == 38 * 10 - 20
        # another user name has its own budget (and an unknown user is as unknown as before)
        assert await login_from(node.port, "127.0.2.1", "admin", "x") == 403


async def test_admin_is_not_locked_out_by_guessing_from_other_addresses() -> None:
    clock = FakeClock(0.0)
    throttle = LoginThrottle(10, 60.0, max_user_failures=20, clock=clock)
    async with auth_node(throttle=throttle) as node:
        assert await login_from(node.port, "127.0.3.1", "nacos", PASSWORD) == 200  # the admin's usual address
        for i in range(40):  # the user's budget is spent by others
            await login_from(node.port, f"127.0.4.{i % 30 + 1}", "nacos", f"guess-{i}")
        assert await login_from(node.port, "127.0.4.99", "nacos", PASSWORD) == 429  # a new address waits
        assert await login_from(node.port, "127.0.3.1", "nacos", PASSWORD) == 200  # the admin's address does not
        # guessing from the admin's own address is still bounded there
        for i in range(10):
            assert await login_from(node.port, "127.0.3.1", "nacos", f"guess-{i}") == 403
        assert await login_from(node.port, "127.0.3.1", "nacos", PASSWORD) == 429
        clock.now += 61
        assert await login_from(node.port, "127.0.4.99", "nacos", PASSWORD) == 200


async def test_auth_off_by_default() -> None:
    node_settings = parse_settings(["--port", "18848"])
    assert node_settings.auth is False
    async with auth_node(node_settings, enable=False) as node:
        response = await node.client.get(f"{NS}/instance/list", params={"serviceName": "a"})
        assert response.status_code == 200
        # with auth off, login answers a token for any credentials (issue 12): nothing checks it
        response = await node.client.post("/nacos/v1/auth/login", params={"username": "any", "password": "x"})
        assert response.status_code == 200 and response.json()["accessToken"] == OPEN_TOKEN
        listed = await node.client.get(f"{NS}/instance/list", params={"serviceName": "a", "accessToken": "junk"})
        assert listed.status_code == 200
        response = await node.client.post("/nacos/v1/auth/login", params={"username": "any"})
        assert (response.status_code, response.text) == (400, "Parameter 'password' is missing")


async def test_node_server_installs_auth_from_settings() -> None:
    """The wiring in NodeServer: --auth gives a guarded API (served here without the peer link)."""
    for node_settings, guarded in [(settings_for(), True), (parse_settings(["--port", "18848"]), False)]:
        server = NodeServer(node_settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.runtime.run)
            port = await nursery.start(partial(serve_http, server.api, "127.0.0.1", 0, server.limits))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                response = await client.get(f"{NS}/instance/list", params={"serviceName": "a"})
                assert response.status_code == (403 if guarded else 200)
                response = await client.post(
                    "/nacos/v1/auth/login", params={"username": "nacos", "password": PASSWORD}
                )
                assert response.status_code == 200  # auth off: a token nothing checks
                assert (response.json()["accessToken"] == OPEN_TOKEN) is not guarded
            nursery.cancel_scope.cancel()


# ------------------------------------------------------------------------------------------------
# nacos-sdk-python 0.1.17
# ------------------------------------------------------------------------------------------------
def _sdk_session(port: int, log_dir: Path, username: str | None, password: str | None) -> list[object]:
    """Run a register / list / beat / remove session with the SDK (blocking; called in a thread)."""
    import nacos

    client = nacos.NacosClient(
        f"127.0.0.1:{port}", username=username, password=password, logDir=str(log_dir)
    )
    out: list[object] = []
    out.append(client.add_naming_instance("sdk-svc", "10.1.0.1", 8080, cluster_name="c1", metadata={"k": "v"}))
    listed = client.list_naming_instance("sdk-svc")
    out.append(sorted((h["ip"], h["port"], h["clusterName"]) for h in listed["hosts"]))
    beat = client.send_heartbeat("sdk-svc", "10.1.0.1", 8080, cluster_name="c1")
    out.append(beat["code"])
    out.append(client.remove_naming_instance("sdk-svc", "10.1.0.1", 8080, cluster_name="c1"))
    out.append(client.list_naming_instance("sdk-svc")["hosts"])
    return out


def _sdk_refused(port: int, log_dir: Path, username: str | None, password: str | None) -> str:
    import nacos

    try:
        client = nacos.NacosClient(f"127.0.0.1:{port}", username=username, password=password, logDir=str(log_dir))
        client.add_naming_instance("sdk-svc", "10.1.0.2", 8080)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "accepted"


async def test_nacos_sdk_python_with_credentials(tmp_path: Path) -> None:
    async with auth_node() as node:
        out = await trio.to_thread.run_sync(_sdk_session, node.port, tmp_path, "nacos", PASSWORD)
        assert out == [True, [("10.1.0.1", 8080, "c1")], 10200, True, []]
        assert node.auth is not None and node.auth.counts["login_ok"] == 1


async def test_nacos_sdk_python_without_credentials_is_refused(tmp_path: Path) -> None:
    async with auth_node() as node:
        refused: Callable[..., str] = _sdk_refused
        assert await trio.to_thread.run_sync(refused, node.port, tmp_path, None, None) == (
            "NacosException: Insufficient privilege."
        )
        # wrong password: the constructor's login fails with the 403
        outcome = await trio.to_thread.run_sync(refused, node.port, tmp_path, "nacos", "wrong")
        assert outcome.startswith("HTTPError") and "403" in outcome
        from distro.model import service_key

        assert node.api.node.view(service_key(None, None, "sdk-svc")) is None



async def test_username_and_password_parameters_authenticate_a_request() -> None:
    """Nacos's third way in (NacosAuthManager.resolveToken): no token, but username and password parameters."""
    async with auth_node() as node:
        params = {"serviceName": "a", "username": "nacos", "password": PASSWORD}
        assert (await node.client.get(f"{NS}/instance/list", params=params)).status_code == 200
        register = await node.client.post(f"{NS}/instance", data={**params, "ip": "10.0.0.1", "port": "80"})
        assert (register.status_code, register.text) == (200, "ok")
        for wrong in ({**params, "password": "nope"}, {"serviceName": "a", "username": "nacos"},
                      {"serviceName": "a", "password": PASSWORD}):
            response = await node.client.get(f"{NS}/instance/list", params=wrong)
            assert (response.status_code, response.text) == (403, "unknown user!"), wrong
        # a token, when given, is what counts (a bad one is refused whatever the credentials say)
        response = await node.client.get(f"{NS}/instance/list", params={**params, "accessToken": "bad"})
        assert (response.status_code, response.text) == (403, "token invalid!")
        assert node.auth is not None
        assert (node.auth.counts["credentials_ok"], node.auth.counts["refused_credentials"]) == (2, 3)


def _sdk_session_unchecked(port: int, log_dir: Path) -> list[object]:
    return _sdk_session(port, log_dir, "nacos", "any password at all")


async def test_nacos_sdk_python_with_credentials_against_auth_off(tmp_path: Path) -> None:
    """nacos-sdk-python 0.1.17 logs in from its constructor and raises when that fails: with auth off the
    login answers a token, so a client configured with credentials works."""
    async with auth_node(parse_settings(["--port", "18848"]), enable=False) as node:
        out = await trio.to_thread.run_sync(_sdk_session_unchecked, node.port, tmp_path)
        assert out == [True, [("10.1.0.1", 8080, "c1")], 10200, True, []]


def _sdk_after_rotation(port: int, log_dir: Path, rotate: Callable[[], None]) -> list[str]:
    """Log in, rotate the node's secret, then call twice; then let the client's own expiry pass."""
    import nacos

    client = nacos.NacosClient(f"127.0.0.1:{port}", username="nacos", password=PASSWORD, logDir=str(log_dir))
    out = [str(client.add_naming_instance("rot-svc", "10.2.0.1", 80, cluster_name="c1"))]
    rotate()
    for _ in range(2):
        try:
            client.list_naming_instance("rot-svc")
            out.append("ok")
        except Exception as exc:
            out.append(str(exc))
    client.token_expire_time = 0  # what happens by itself tokenTtl - 10 s after the login
    out.append(str(len(client.list_naming_instance("rot-svc")["hosts"])))
    return out


async def test_nacos_sdk_python_does_not_log_in_again_on_403(tmp_path: Path) -> None:
    """Why docs/security.md says to restart clients (or wait out tokenTtl) after rotating the token secret:
    nacos-sdk-python 0.1.17 re-logs in on its own schedule only; a 403 does not make it drop its token."""
    async with auth_node() as node:
        assert node.auth is not None
        auth = node.auth

        def rotate() -> None:  # what restarting the node with another --token-secret does
            auth.codec = TokenCodec(OTHER_SECRET.encode(), 18000, clock=node.clock)

        out = await trio.to_thread.run_sync(
            _sdk_after_rotation, node.port, tmp_path, partial(trio.from_thread.run_sync, rotate)
        )
        assert out == ["True", "Insufficient privilege.", "Insufficient privilege.", "1"]


async def test_equal_token_and_cluster_secrets_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    same = replace(settings_for(), cluster_secret=SECRET)
    async with auth_node(same):
        pass
    assert any("token secret equals the cluster secret" in r.getMessage() for r in caplog.records)
    caplog.clear()
    async with auth_node(replace(settings_for(), cluster_secret=OTHER_SECRET)):
        pass
    assert not any("equals" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------------
# the keep-alive lane: the fast handler's requests are checked exactly as the handler's
# ------------------------------------------------------------------------------------------------
async def _raw_exchange(port: int, requests: list[bytes]) -> list[bytes]:
    """Send each request on one connection, in turn, and return each raw response (head and body)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    answers: list[bytes] = []
    buf = bytearray()
    async with stream:
        for request in requests:
            await stream.send_all(request)
            while (end := buf.find(b"\r\n\r\n")) < 0:
                chunk = await stream.receive_some(65536)
                assert chunk, bytes(buf)
                buf += chunk
            length = int(re.search(rb"(?i)content-length: *([0-9]+)", bytes(buf[:end])).group(1))  # type: ignore[union-attr]
            while len(buf) < end + 4 + length:
                chunk = await stream.receive_some(65536)
                assert chunk, bytes(buf)
                buf += chunk
            answers.append(bytes(buf[: end + 4 + length]))
            del buf[: end + 4 + length]
    return answers


async def test_lane_requests_are_checked_and_answered_exactly_as_the_handlers() -> None:
    """A registration or a light beat on a kept-alive connection goes through NamingApi.answer_now in the
    keep-alive lane: for every request of a matrix of good and bad ones (tokens, credentials, parameters),
    the bytes answered and the auth counters and throttle are the same as when the connection's task
    answers it (a connection's first request), and a guard runs once per request."""
    async with auth_node(lane=True, throttle=LoginThrottle(100, 60.0, max_user_failures=1000)) as node:
        token = await node.login()
        expired = forge(json.dumps({"sub": "nacos", "exp": int(node.clock.now) - 1, "iat": 0, "v": 1}).encode())
        reg = "POST /nacos/v1/ns/instance?serviceName=lane-auth&ip=10.0.0.{n}&port=80"
        beat = "PUT /nacos/v1/ns/instance/beat?serviceName=lane-auth&ip=10.0.0.{n}&port=80"
        cases = [
            (reg + "&accessToken={token}", ""),
            (reg, f"Authorization: Bearer {token}\r\n"),
            (reg, ""),
            (reg + "&accessToken=bad", ""),
            (reg + "&accessToken={expired}", ""),
            (reg + "&username=nacos&password=" + PASSWORD.replace(" ", "%20"), ""),
            (reg + "&username=nacos&password=wrong", ""),
            (reg + "&username=nacos", ""),
            (reg + "&accessToken={token}&ephemeral=false", ""),
            (reg + "&accessToken={token}&weight=abc", ""),
            (reg + "&accessToken={token}&metadata=%7Bnot-json", ""),
            (reg + "&accessToken={token}&healthy=maybe", ""),
            ("POST /nacos/v1/ns/instance?serviceName=lane-auth&ip=bad-ip&port=80&accessToken={token}", ""),
            ("POST /nacos/v1/ns/instance?serviceName=lane-auth&ip=10.0.0.9&port=99999&accessToken={token}", ""),
            ("POST /nacos/v1/ns/instance?ip=10.0.0.9&port=80&accessToken={token}", ""),
            (beat + "&accessToken={token}", ""),
            (beat, ""),
            (beat + "&username=nacos&password=wrong", ""),
        ]
        auth = node.auth
        assert auth is not None
        warm = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        inline = []
        for n, (target, extra) in enumerate(cases):
            line = target.format(n=n % 4, token=token, expired=expired)
            request = f"{line} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()
            counts = dict(auth.counts)
            (by_task,) = await _raw_exchange(node.port, [request])  # a connection's first request: its task's
            task_counts = {k: v - counts[k] for k, v in auth.counts.items()}
            counts = dict(auth.counts)
            inline_before = node.http_stats.inline_requests_total
            _, in_lane = await _raw_exchange(node.port, [warm, request])  # kept alive: the lane's
            inline.append(node.http_stats.inline_requests_total - inline_before)
            lane_counts = {k: v - counts[k] for k, v in auth.counts.items()}
            assert in_lane == by_task, line
            assert lane_counts == task_counts, line
            assert sum(task_counts.values()) <= 1, line  # one guard decision per request
        # answered in the lane: the good registrations and beats, and the guards' refusals
        assert inline == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0]  # (a host name is an ip)


_FUZZ_VALUES = st.text(max_size=12) | st.sampled_from(
    ["", "80", "99999", "-1", "1e3", "10.0.0.1", "::1", "true", "false", "{}", '{"a":"b"}', "%", "%zz", "nan", "inf"])
_FUZZ_NAMES = st.sampled_from(["serviceName", "ip", "port", "weight", "healthy", "enabled", "metadata", "ephemeral",
                               "clusterName", "groupName", "namespaceId", "dom", "valid", "enable", "beat"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_FUZZ_NAMES, _FUZZ_VALUES), max_size=8),
       st.sampled_from([f"{NS}/instance", f"{NS}/instance/beat"]), st.sampled_from(["POST", "PUT"]))
def test_lane_answers_random_writes_as_the_handler_does(pairs: list[tuple[str, str]], path: str, method: str) -> None:
    """Random registrations and beats (auth off): the bytes a kept-alive connection gets from the lane are
    the bytes a connection's first request (its task's) gets, before or after it."""

    async def main() -> None:
        async with auth_node(enable=False, lane=True) as node:
            query = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
            request = f"{method} {path}?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            (before,) = await _raw_exchange(node.port, [request])
            _, in_lane = await _raw_exchange(node.port, [b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", request])
            (after,) = await _raw_exchange(node.port, [request])
            assert in_lane in (before, after), (request, before, in_lane, after)  # (a first registration differs)

    trio.run(main)
