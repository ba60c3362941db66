"""Latency probes that run in the orchestrating process (the background load runs in a separate process).

* :func:`converge_distro` - register on one node, time until every node shows the instance: through
  ``instance/watch`` (long poll, re-armed with the checksum) when the nodes serve it, else by polling
  ``instance/list`` back to back on dedicated connections.
* :func:`converge_etcd` - put on one member, time until watchers (``/v3/watch`` streams) on every member see
  it; also the same measured by polling serializable ``/v3/kv/range`` (for a like-for-like comparison).
* :func:`push_udp` - change to a Nacos 1.x UDP subscriber (list with ``udpPort``; gunzip; ack).
* :func:`failover` - SIGKILL the owner of services that beat through a survivor; time until the survivors
  agree on new owners; check that every instance stays listed and healthy throughout.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from benchlib.httpraw import ChunkStream, HttpError, RawConn, build_request, open_conn, split_addr

NS = "/nacos/v1/ns"
JAVA_UA = "Nacos-Java-Client:v1.4.2"


def _now() -> float:
    return time.perf_counter()


def probe_ip(k: int, net: int) -> str:
    return f"10.{net}.{(k >> 8) & 255}.{k & 255}"


@dataclass
class Sample:
    """One change being timed: the bytes that show it, when it was made, when each node showed it."""

    marker: bytes
    t0: float = 0.0
    seen: dict[int, float] = field(default_factory=dict)
    done: trio.Event = field(default_factory=trio.Event)


class SampleBoard:
    """Pending samples; observers report what they see, the sampler waits for every node."""

    def __init__(self, nodes: int) -> None:
        self.nodes = nodes
        self.pending: list[Sample] = []
        self.changed = trio.Event()

    def add(self, sample: Sample) -> None:
        self.pending.append(sample)
        self.changed.set()
        self.changed = trio.Event()

    def observe(self, node: int, body: bytes, t: float) -> None:
        for s in list(self.pending):
            if node not in s.seen and s.marker in body:
                s.seen[node] = t
                if len(s.seen) == self.nodes:
                    s.done.set()
                    self.pending.remove(s)

    def unseen(self, node: int) -> bool:
        return any(node not in s.seen for s in self.pending)


# ----------------------------------------------------------------------------------------------
# our cluster
# ----------------------------------------------------------------------------------------------
async def anchor(conn: RawConn, addr: str, service: str, net: int, port: int) -> None:
    """One instance that stays for the whole probe, so the list never becomes empty between samples
    (clients may ignore empty pushes)."""
    ip = f"10.{net}.255.254"
    status, body = await conn.request(
        build_request("POST", f"{NS}/instance?serviceName={service}&ip={ip}&port={port}", addr))
    if body != b"ok":
        raise HttpError(f"anchor register failed: {status} {body[:100]!r}")


async def has_watch(addr: str) -> bool:
    host, port = split_addr(addr)
    conn = await open_conn(host, port)
    try:
        status, _ = await conn.request(
            build_request("GET", f"{NS}/instance/watch?serviceName=bench-watch-check&timeoutMs=0", addr)
        )
    finally:
        conn.close()
    return status in (200, 304)


def _checksum(body: bytes) -> str:
    i = body.find(b'"checksum":"')
    if i < 0:
        return ""
    j = body.find(b'"', i + 12)
    return body[i + 12 : j].decode()


async def _watch_observer(addr: str, node: int, service: str, board: SampleBoard, stats: dict[str, int]) -> None:
    host, port = split_addr(addr)
    conn = await open_conn(host, port)
    checksum: str | None = None
    try:
        while True:
            target = f"{NS}/instance/watch?serviceName={service}&timeoutMs=30000"
            if checksum is not None:
                target += f"&checksum={checksum}"
            status, body = await conn.request(build_request("GET", target, addr))
            t = _now()
            stats["responses"] = stats.get("responses", 0) + 1
            if status == 200:
                board.observe(node, body, t)
                checksum = _checksum(body)
    finally:
        conn.close()


async def _poll_observer(addr: str, node: int, service: str, board: SampleBoard, interval: float,
                         stats: dict[str, int]) -> None:
    host, port = split_addr(addr)
    conn = await open_conn(host, port)
    req = build_request("GET", f"{NS}/instance/list?serviceName={service}", addr)
    try:
        while True:
            if not board.unseen(node):
                await board.changed.wait()
                continue
            _, body = await conn.request(req)
            stats["responses"] = stats.get("responses", 0) + 1
            board.observe(node, body, _now())
            if interval > 0:
                await trio.sleep(interval)
    finally:
        conn.close()


async def converge_distro(addrs: list[str], samples: int, *, method: str, poll_interval: float = 0.001,
                          timeout: float = 5.0, net: int = 200) -> dict[str, Any]:
    """Register on node k % n, time until every node (the writer included) lists the instance."""
    n = len(addrs)
    service = f"probe-converge-{net}"
    board = SampleBoard(n)
    lat: list[float] = []
    missed = 0
    stats: dict[str, int] = {}
    writers = [await open_conn(*split_addr(a)) for a in addrs]
    await anchor(writers[0], addrs[0], service, net, 7000)
    try:
        async with trio.open_nursery() as nursery:
            for i, a in enumerate(addrs):
                if method == "watch":
                    nursery.start_soon(_watch_observer, a, i, service, board, stats)
                else:
                    nursery.start_soon(_poll_observer, a, i, service, board, poll_interval, stats)
            await trio.sleep(0.2)
            for k in range(samples):
                ip = probe_ip(k, net)
                w = k % n
                sample = Sample(f'"ip":"{ip}","port":7000,'.encode())
                req = build_request("POST", f"{NS}/instance?serviceName={service}&ip={ip}&port=7000", addrs[w])
                sample.t0 = _now()
                board.add(sample)
                status, body = await _request_fresh(writers, w, addrs[w], req)
                if status != 200 or body != b"ok":
                    raise HttpError(f"probe register failed: {status} {body[:100]!r}")
                with trio.move_on_after(timeout):
                    await sample.done.wait()
                if sample.done.is_set():
                    lat.append((max(sample.seen.values()) - sample.t0) * 1000)
                else:
                    missed += 1
                    with contextlib.suppress(ValueError):
                        board.pending.remove(sample)
                # keep the probe service small: deregister, then pause a little (jitter)
                await _request_fresh(
                    writers, w, addrs[w],
                    build_request("DELETE", f"{NS}/instance?serviceName={service}&ip={ip}&port=7000", addrs[w]),
                )
                await trio.sleep(0.02 + random.random() * 0.02)
            nursery.cancel_scope.cancel()
    finally:
        for c in writers:
            c.close()
    return {"method": method, "samples_ms": lat, "missed": missed, "observer_responses": stats.get("responses", 0),
            "poll_interval_ms": poll_interval * 1000 if method == "poll" else None}


# ----------------------------------------------------------------------------------------------
# etcd
# ----------------------------------------------------------------------------------------------
def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


async def _etcd_watcher(addr: str, node: int, prefix: str, board: SampleBoard, created: trio.Event) -> None:
    host, port = split_addr(addr)
    conn = await open_conn(host, port)
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = json.dumps({"create_request": {"key": _b64(prefix), "range_end": _b64(end)}}).encode()
    try:
        await conn.send_all(build_request("POST", "/v3/watch", addr, body, "Content-Type: application/json\r\n"))
        stream = ChunkStream()
        while True:
            data = await conn.recv_some()
            t = _now()
            for line in stream.feed(data):
                msg = json.loads(line)
                result = msg.get("result", {})
                if result.get("created"):
                    created.set()
                for ev in result.get("events", []) or []:
                    key = base64.b64decode(ev.get("kv", {}).get("key", "")).decode()
                    board.observe(node, key.encode(), t)
    finally:
        conn.close()


async def _etcd_poller(addr: str, node: int, board: SampleBoard, interval: float) -> None:
    host, port = split_addr(addr)
    conn = await open_conn(host, port)
    try:
        while True:
            if not board.unseen(node):
                await board.changed.wait()
                continue
            for s in list(board.pending):
                if node in s.seen:
                    continue
                body = json.dumps({"key": _b64(s.marker.decode()), "serializable": True}).encode()
                status, reply = await conn.request(
                    build_request("POST", "/v3/kv/range", addr, body, "Content-Type: application/json\r\n")
                )
                if status == 200 and b'"kvs"' in reply:
                    board.observe(node, s.marker, _now())
            if interval > 0:
                await trio.sleep(interval)
    finally:
        conn.close()


async def converge_etcd(addrs: list[str], samples: int, *, method: str, poll_interval: float = 0.001,
                        timeout: float = 5.0, tag: str = "w") -> dict[str, Any]:
    """Put on member k % n, time until every member's watcher (or serializable read) sees the key."""
    n = len(addrs)
    prefix = f"/probe-{tag}/"
    board = SampleBoard(n)
    lat: list[float] = []
    missed = 0
    writers = [await open_conn(*split_addr(a)) for a in addrs]
    try:
        async with trio.open_nursery() as nursery:
            if method == "watch":
                created = [trio.Event() for _ in addrs]
                for i, a in enumerate(addrs):
                    nursery.start_soon(_etcd_watcher, a, i, prefix, board, created[i])
                with trio.fail_after(10):
                    for ev in created:
                        await ev.wait()
            else:
                for i, a in enumerate(addrs):
                    nursery.start_soon(_etcd_poller, a, i, board, poll_interval)
            await trio.sleep(0.2)
            for k in range(samples):
                key = f"{prefix}{k}"
                w = k % n
                sample = Sample(key.encode())
                body = json.dumps({"key": _b64(key), "value": _b64('{"ip":"10.9.9.9","port":7000}')}).encode()
                req = build_request("POST", "/v3/kv/put", addrs[w], body, "Content-Type: application/json\r\n")
                sample.t0 = _now()
                board.add(sample)
                status, reply = await writers[w].request(req)
                if status != 200:
                    raise HttpError(f"etcd probe put failed: {status} {reply[:100]!r}")
                with trio.move_on_after(timeout):
                    await sample.done.wait()
                if sample.done.is_set():
                    lat.append((max(sample.seen.values()) - sample.t0) * 1000)
                else:
                    missed += 1
                    with contextlib.suppress(ValueError):
                        board.pending.remove(sample)
                await trio.sleep(0.02 + random.random() * 0.02)
            nursery.cancel_scope.cancel()
    finally:
        for c in writers:
            c.close()
    return {"method": method, "samples_ms": lat, "missed": missed,
            "poll_interval_ms": poll_interval * 1000 if method == "poll" else None}


async def _request_fresh(conns: list[RawConn], i: int, addr: str, req: bytes) -> tuple[int, bytes]:
    """``req`` on ``conns[i]``, on a new connection when the server closed or timed out the idle one (r-nacos's
    HTTP server answers 408 to a connection idle for 5 s, then closes it)."""
    try:
        status, body = await conns[i].request(req)
        if status != 408:
            return status, body
    except (HttpError, OSError):
        pass
    conns[i].close()
    conns[i] = await open_conn(*split_addr(addr))
    return await conns[i].request(req)


# ----------------------------------------------------------------------------------------------
# UDP push
# ----------------------------------------------------------------------------------------------
async def push_udp(addrs: list[str], samples: int, *, timeout: float = 3.0, net: int = 201) -> dict[str, Any]:
    """One Nacos-1.x-style UDP subscriber per node; register on node k % n; time each subscriber's packet.

    Returns ``{"supported": False}`` when a node does not announce push (cacheMillis 10000)."""
    n = len(addrs)
    service = f"probe-push-{net}"
    socks = []
    for _ in addrs:
        s = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await s.bind(("127.0.0.1", 0))
        socks.append(s)
    conns = [await open_conn(*split_addr(a)) for a in addrs]
    board = SampleBoard(n)
    lat: list[float] = []
    per_node: list[list[float]] = [[] for _ in addrs]
    missed = 0
    packets = {"received": 0, "gzip": 0, "acked": 0}

    def list_req(i: int) -> bytes:
        port = socks[i].getsockname()[1]
        return build_request(
            "GET", f"{NS}/instance/list?serviceName={service}&udpPort={port}&clientIP=127.0.0.1", addrs[i],
            headers=f"User-Agent: {JAVA_UA}\r\n",
        )

    async def subscribe(i: int) -> bool:
        status, body = await conns[i].request(list_req(i))
        return status == 200 and b'"cacheMillis":10000' in body

    async def refresher() -> None:
        while True:
            await trio.sleep(3)
            for i in range(n):
                await subscribe(i)

    async def receiver(i: int) -> None:
        s = socks[i]
        while True:
            data, src = await s.recvfrom(65536)
            t = _now()
            packets["received"] += 1
            if data[:2] == b"\x1f\x8b":
                packets["gzip"] += 1
                data = gzip.decompress(data)
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            if msg.get("type") in ("dom", "service"):
                ack = json.dumps({"type": "push-ack", "lastRefTime": str(msg.get("lastRefTime")), "data": ""})
                await s.sendto(ack.encode(), src)
                packets["acked"] += 1
                payload = msg.get("data", "")
                board.observe(i, payload.encode() if isinstance(payload, str) else json.dumps(payload).encode(), t)

    try:
        supported = [await subscribe(i) for i in range(n)]
        if not all(supported):
            return {"supported": False}
        writers = [await open_conn(*split_addr(a)) for a in addrs]
        await anchor(writers[0], addrs[0], service, net, 7001)
        try:
            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(receiver, i)
                nursery.start_soon(refresher)
                await trio.sleep(0.3)
                for k in range(samples):
                    ip = probe_ip(k, net)
                    w = k % n
                    sample = Sample(f'"ip":"{ip}","port":7001,'.encode())
                    req = build_request("POST", f"{NS}/instance?serviceName={service}&ip={ip}&port=7001", addrs[w])
                    sample.t0 = _now()
                    board.add(sample)
                    status, body = await _request_fresh(writers, w, addrs[w], req)
                    if status != 200 or body != b"ok":
                        raise HttpError(f"push probe register failed: {status} {body[:100]!r}")
                    with trio.move_on_after(timeout):
                        await sample.done.wait()
                    for node, t in sample.seen.items():
                        ms = (t - sample.t0) * 1000
                        lat.append(ms)
                        per_node[node].append(ms)
                    missed += n - len(sample.seen)
                    if k >= 4 and packets["received"] == 0:
                        break  # five changes and not one packet: the server does not push to this subscriber
                    with contextlib.suppress(ValueError):
                        board.pending.remove(sample)
                    await _request_fresh(
                        writers, w, addrs[w],
                        build_request("DELETE", f"{NS}/instance?serviceName={service}&ip={ip}&port=7001", addrs[w]),
                    )
                    await trio.sleep(0.03 + random.random() * 0.02)
                nursery.cancel_scope.cancel()
        finally:
            for c in writers:
                c.close()
    finally:
        for c in conns:
            c.close()
        for s in socks:
            s.close()
    return {"supported": True, "samples_ms": lat, "missed": missed, "packets": packets}


# ----------------------------------------------------------------------------------------------
# failover
# ----------------------------------------------------------------------------------------------
async def owner_of(conn: RawConn, addr: str, service: str) -> str | None:
    status, body = await conn.request(
        build_request("GET", f"{NS}/operator/distro/server?serviceName={service}", addr)
    )
    if status != 200:
        return None
    value = json.loads(body).get("responsibleServer")
    return str(value) if value else None


async def _new_owners_agreed(control: list[RawConn], addrs: list[str], survivors: list[int], services: list[str],
                             victim_addr: str, deadline: float) -> float | None:
    """Poll the survivors every 5 ms until all name the same live owner for each of ``services``; when."""
    while _now() < deadline:
        views: list[list[str | None] | None] = []
        for i in survivors:
            try:
                views.append([await owner_of(control[i], addrs[i], s) for s in services])
            except (HttpError, OSError):
                views.append(None)
        if views and all(v is not None and v == views[0] for v in views) and all(
                o not in (None, victim_addr) for o in views[0] or []):
            return _now()
        await trio.sleep(0.005)
    return None


async def failover(addrs: list[str], kill: Callable[[int], None], *, services: int = 12, beat_interval: float = 1.0,
                   settle: float = 3.0, observe: float = 17.0, check_interval: float = 0.2) -> dict[str, Any]:
    """Kill the owner of ``fo-0``; every ``fo-*`` instance beats every second through a survivor."""
    n = len(addrs)
    control = [await open_conn(*split_addr(a)) for a in addrs]
    names = [f"fo-{j}" for j in range(services)]
    owners = {s: await owner_of(control[0], addrs[0], s) for s in names}
    victim_addr = owners[names[0]]
    if victim_addr not in addrs:
        raise RuntimeError(f"owner of fo-0 is {victim_addr}, not one of {addrs}")
    victim = addrs.index(victim_addr)
    survivors = [i for i in range(n) if i != victim]
    victim_services = [s for s in names if owners[s] == victim_addr]
    beat_stats = {"ok": 0, "failed": 0, "reregistered": 0}
    violations: list[str] = []
    result: dict[str, Any] = {"victim": f"n{victim + 1}", "victim_services": len(victim_services)}

    def inst(j: int) -> tuple[str, str, int]:
        return names[j], f"10.77.0.{j + 1}", 7002

    beat_conns = [await open_conn(*split_addr(addrs[survivors[j % len(survivors)]])) for j in range(services)]
    for j in range(services):
        svc, ip, port = inst(j)
        a = addrs[survivors[j % len(survivors)]]
        status, body = await beat_conns[j].request(
            build_request("POST", f"{NS}/instance?serviceName={svc}&ip={ip}&port={port}", a))
        if body != b"ok":
            raise HttpError(f"failover register: {status} {body[:100]!r}")

    async def beater(j: int) -> None:
        svc, ip, port = inst(j)
        a = addrs[survivors[j % len(survivors)]]
        conn = beat_conns[j]
        while True:
            await trio.sleep(beat_interval)
            try:
                status, body = await conn.request(
                    build_request("PUT", f"{NS}/instance/beat?serviceName={svc}&ip={ip}&port={port}", a))
                if status == 200 and b'"code":20404' in body:
                    beat_stats["reregistered"] += 1
                    await conn.request(build_request("POST", f"{NS}/instance?serviceName={svc}&ip={ip}&port={port}", a))
                elif status == 200:
                    beat_stats["ok"] += 1
                else:
                    beat_stats["failed"] += 1
            except (HttpError, OSError):
                beat_stats["failed"] += 1
                conn.close()
                conn = beat_conns[j] = await open_conn(*split_addr(a))

    check_conns = [await open_conn(*split_addr(a)) for a in addrs]

    async def checker() -> None:
        while True:
            for i in survivors:
                for j in range(services):
                    svc, ip, port = inst(j)
                    try:
                        _, body = await check_conns[i].request(
                            build_request("GET", f"{NS}/instance/list?serviceName={svc}", addrs[i]))
                    except (HttpError, OSError) as exc:
                        violations.append(f"n{i + 1}: list failed: {exc}")
                        continue
                    marker = f'"ip":"{ip}","port":{port},'.encode()
                    at = body.find(marker)
                    if at < 0:
                        violations.append(f"n{i + 1}: {svc} {ip} not listed")
                    elif body.find(b'"healthy":true', at) != body.find(b'"healthy":', at):
                        violations.append(f"n{i + 1}: {svc} {ip} unhealthy")
            await trio.sleep(check_interval)

    try:
        async with trio.open_nursery() as nursery:
            for j in range(services):
                nursery.start_soon(beater, j)
            await trio.sleep(settle)
            nursery.start_soon(checker)
            t_kill = _now()
            kill(victim)
            agreed_at = await _new_owners_agreed(control, addrs, survivors, victim_services, victim_addr, t_kill + 30)
            result["failover_ms"] = None if agreed_at is None else round((agreed_at - t_kill) * 1000, 1)
            remaining = observe - (_now() - t_kill)
            if remaining > 0:
                await trio.sleep(remaining)
            nursery.cancel_scope.cancel()
    finally:
        for c in control + beat_conns + check_conns:
            c.close()
    result.update({"beats": beat_stats, "violations": violations[:20], "violation_count": len(violations),
                   "observed_s": observe, "instances": services, "beat_interval_s": beat_interval})
    return result


__all__ = ["anchor", "converge_distro", "converge_etcd", "failover", "has_watch", "push_udp"]
