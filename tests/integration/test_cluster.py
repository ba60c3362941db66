"""A real three-node cluster on 127.0.0.1: replication, failover, restart, expiry, input validation, probes.

Every wait polls with a deadline; nothing sleeps a fixed time to let something happen.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from cluster.tools.launcher import LocalNode

from .conftest import (
    HEARTBEAT_TIMEOUT_S,
    INSTANCE_EXPIRE_S,
    NS,
    Beater,
    RunningCluster,
    summarize,
    unique,
    wait_until,
)

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------------------------
# replication
# ------------------------------------------------------------------------------------------------
def test_registration_is_visible_on_every_other_node(cluster: RunningCluster) -> None:
    """Register on one node, poll the two others: the write shows up everywhere, quickly."""
    visible: list[float] = []
    gone: list[float] = []
    for round_no in range(18):
        source = cluster.nodes[round_no % 3]
        others = [n for n in cluster.nodes if n is not source]
        service = unique(f"visible{round_no}")
        ip, port = f"10.1.0.{round_no + 1}", 8000 + round_no
        started = time.perf_counter()
        cluster.register(source, service, ip, port, metadata="round=" + str(round_no))
        visible.append(_time_until_all(cluster, others, service, ip, present=True, started=started))
        for node in others:
            host = cluster.host(node, service, ip, port)
            assert host is not None and host["metadata"] == {"round": str(round_no)} and host["healthy"] is True
        started = time.perf_counter()
        cluster.deregister(others[round_no % 2], service, ip, port)
        gone.append(_time_until_all(cluster, cluster.nodes, service, ip, present=False, started=started))
    print(summarize("registration -> visible on both other nodes", visible))
    print(summarize("deregistration -> gone on all three nodes", gone))
    assert max(visible) < 2.0, visible
    assert max(gone) < 2.0, gone


def _time_until_all(
    cluster: RunningCluster, nodes: list[LocalNode], service: str, ip: str, *, present: bool, started: float
) -> float:
    """Seconds from ``started`` until ``ip`` is present (or absent) on every node (polled back to back)."""
    pending = list(nodes)
    deadline = started + 10.0
    while pending:
        for node in list(pending):
            listed = any(h["ip"] == ip for h in cluster.hosts(node, service))
            if listed == present:
                pending.remove(node)
        if pending:
            assert time.perf_counter() < deadline, f"{ip} still {'missing' if present else 'listed'} on {pending}"
            time.sleep(0.002)
    return time.perf_counter() - started


def test_any_node_accepts_writes_for_one_service(cluster: RunningCluster) -> None:
    """Three instances registered through three different nodes end up listed together everywhere."""
    service = unique("together")
    for index, node in enumerate(cluster.nodes):
        cluster.register(node, service, f"10.2.0.{index + 1}", 80, weight=index + 1)
    want = {("10.2.0.1", 1.0), ("10.2.0.2", 2.0), ("10.2.0.3", 3.0)}
    for node in cluster.nodes:
        wait_until(lambda node=node: {(h["ip"], h["weight"]) for h in cluster.hosts(node, service)} == want,
                   f"all three instances on {node.node_id}")
    checksums = {cluster.call(n, "GET", f"{NS}/instance/list", serviceName=service).json()["checksum"]
                 for n in cluster.nodes}
    assert len(checksums) == 1, checksums
    for index in range(3):
        cluster.deregister(cluster.nodes[(index + 1) % 3], service, f"10.2.0.{index + 1}", 80)


# ------------------------------------------------------------------------------------------------
# failover and restart
# ------------------------------------------------------------------------------------------------
def test_owner_killed_then_restarted(fresh_cluster: RunningCluster) -> None:
    """kill -9 the owner of a heartbeating instance: it never disappears, the survivors agree on a new
    owner, the restarted node loads the snapshot, and a deregistration then removes it everywhere."""
    cluster = fresh_cluster
    service, ip, port = unique("failover"), "10.3.0.1", 9000
    owner = cluster.owner(service)
    survivors = [n for n in cluster.nodes if n is not owner]
    via = survivors[0]
    cluster.register(via, service, ip, port)
    for node in cluster.nodes:
        wait_until(lambda node=node: cluster.host(node, service, ip, port), f"the instance on {node.node_id}")
    beater = Beater(via, service, ip, port)
    beater.start()
    try:
        cluster.kill9(owner)
        killed_at = time.monotonic()
        samples = 0
        new_owner_after: float | None = None
        while time.monotonic() - killed_at < INSTANCE_EXPIRE_S + 2.0:  # sample for longer than the expiry
            for node in survivors:
                host = cluster.host(node, service, ip, port)
                elapsed = time.monotonic() - killed_at
                assert host is not None, f"instance missing on {node.node_id} {elapsed:.2f} s after the kill"
                assert host["healthy"] is True, f"instance unhealthy on {node.node_id} {elapsed:.2f} s after the kill"
                samples += 1
            if new_owner_after is None:
                owners = {cluster.owner_address(n, service) for n in survivors}
                if len(owners) == 1 and owner.address not in owners:
                    new_owner_after = time.monotonic() - killed_at
            time.sleep(0.05)
        assert samples > 100
        assert new_owner_after is not None, "survivors never agreed on a new owner"
        new_owner = cluster.owner(service)
        assert new_owner is not owner and new_owner in survivors
        summarize("owner kill -9 -> survivors agree on a new owner", [new_owner_after])

        # The killed node comes back: it loads the snapshot from a peer and lists the instance.
        restarted_at = time.monotonic()
        cluster.restart(owner)
        summarize("restart -> /readyz 200", [time.monotonic() - restarted_at])
        wait_until(lambda: cluster.host(owner, service, ip, port), "the restarted node to list the instance")
        log = owner.log_text(current_run_only=True)
        assert "ready: snapshot loaded from" in log, log
        cluster.wait_settled()
        assert beater.errors == [], beater.errors
        assert beater.beats >= INSTANCE_EXPIRE_S
    finally:
        beater.stop()

    cluster.deregister(owner, service, ip, port)
    for node in cluster.nodes:
        wait_until(lambda node=node: cluster.host(node, service, ip, port) is None,
                   f"the instance gone from {node.node_id}")


def metric(cluster: RunningCluster, node: LocalNode, name: str) -> float:
    """One unlabelled sample of a node's /metrics."""
    for line in cluster.http.get(f"{node.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def test_beats_through_a_non_owner_are_answered_there_and_renew_the_instance_on_its_owner(
    cluster: RunningCluster,
) -> None:
    """Light beats sent only to a node that does not own the service are answered from its replica (none
    is forwarded) and reach the owner as batched receipts: the instance stays healthy everywhere for longer
    than the expiry (docs/design.md, "Beats answered from the replica")."""
    service, ip, port = unique("receipts"), "10.4.1.1", 7100
    owner = cluster.owner(service)
    via = next(n for n in cluster.nodes if n is not owner)
    cluster.register(via, service, ip, port)
    wait_until(lambda: cluster.host(via, service, ip, port), "the instance on the node that will take the beats")
    answered_before = metric(cluster, via, "distro_beats_answered_here_total")
    forwards_before = metric(cluster, via, "distro_forwards_sent_total")
    receipts_before = metric(cluster, owner, "distro_renewals_received_total")
    beater = Beater(via, service, ip, port, interval_s=0.5)
    beater.start()
    try:
        started = time.monotonic()
        while time.monotonic() - started < INSTANCE_EXPIRE_S + 2.0:
            for node in cluster.nodes:
                host = cluster.host(node, service, ip, port)
                assert host is not None and host["healthy"] is True, (node.node_id, host)
            time.sleep(0.1)
    finally:
        beater.stop()
    assert beater.errors == [] and beater.reregistered == 0
    assert metric(cluster, via, "distro_beats_answered_here_total") - answered_before == beater.beats
    assert metric(cluster, via, "distro_forwards_sent_total") == forwards_before
    assert metric(cluster, owner, "distro_renewals_received_total") - receipts_before >= INSTANCE_EXPIRE_S
    cluster.deregister(via, service, ip, port)


def test_silent_instance_turns_unhealthy_then_is_removed_everywhere(cluster: RunningCluster) -> None:
    """An instance that never beats is listed healthy=false after the heartbeat timeout, then removed.

    A second, heartbeating instance keeps the service above its protect threshold (0.0): with no healthy
    instance at all, Nacos's list reports every instance healthy (reachProtectionThreshold), and so do we.
    """
    service, ip, port = unique("silent"), "10.4.0.1", 7000
    companion = Beater(cluster.nodes[0], service, "10.4.0.2", 7000)
    cluster.register(cluster.nodes[0], service, "10.4.0.2", 7000)
    companion.start()
    try:
        registered_at = time.monotonic()
        cluster.register(cluster.nodes[1], service, ip, port)
        seen_unhealthy: dict[str, float] = {}
        gone: dict[str, float] = {}
        deadline = registered_at + INSTANCE_EXPIRE_S + 10.0
        while len(gone) < len(cluster.nodes):
            assert time.monotonic() < deadline, f"unhealthy on {sorted(seen_unhealthy)}, gone on {sorted(gone)}"
            for node in cluster.nodes:
                if node.node_id in gone:
                    continue
                hosts = cluster.hosts(node, service)
                now = time.monotonic() - registered_at
                host = next((h for h in hosts if h["ip"] == ip), None)
                if host is None:
                    if now > 1.0:  # (right after the write a node may not have it yet)
                        gone[node.node_id] = now
                elif host["healthy"] is False:
                    seen_unhealthy.setdefault(node.node_id, now)
                    assert [h["healthy"] for h in hosts if h["ip"] != ip] == [True]
            time.sleep(0.05)
        assert companion.errors == []
        for node in cluster.nodes:  # the beating one is still there, healthy
            assert [(h["ip"], h["healthy"]) for h in cluster.hosts(node, service)] == [("10.4.0.2", True)]
    finally:
        companion.stop()
    assert set(seen_unhealthy) == {n.node_id for n in cluster.nodes}, "every node listed it as unhealthy first"
    assert min(seen_unhealthy.values()) >= HEARTBEAT_TIMEOUT_S - 0.2, seen_unhealthy
    assert min(gone.values()) >= INSTANCE_EXPIRE_S - 0.2, gone
    assert max(gone.values()) < INSTANCE_EXPIRE_S + 4.0, gone
    summarize("no beats -> unhealthy on every node (3 s timeout)", [max(seen_unhealthy.values())])
    summarize("no beats -> removed from every node (6 s expiry)", [max(gone.values())])
    cluster.deregister(cluster.nodes[2], service, "10.4.0.2", 7000)


def test_lone_silent_instance_is_protected_in_lists(cluster: RunningCluster) -> None:
    """Nacos's protect threshold (0.0): when no instance is healthy, the list reports them all healthy and
    says reachProtectionThreshold; GET /instance shows the real state; healthyOnly=true still returns it."""
    service, ip, port = unique("lone"), "10.4.1.1", 7001
    cluster.register(cluster.nodes[2], service, ip, port)

    def detail_unhealthy() -> bool:
        response = cluster.call(cluster.nodes[0], "GET", f"{NS}/instance", serviceName=service, ip=ip, port=port)
        return response.status_code == 200 and response.json()["healthy"] is False

    wait_until(detail_unhealthy, "GET /instance to show healthy=false", timeout_s=HEARTBEAT_TIMEOUT_S + 5)
    for node in cluster.nodes:  # (the other nodes get the unhealthy mark a moment later)

        def protected(node: LocalNode = node) -> bool:
            body = cluster.call(node, "GET", f"{NS}/instance/list", serviceName=service, healthyOnly="true").json()
            if body["reachProtectionThreshold"]:
                assert [h["healthy"] for h in body["hosts"]] == [True]
            return bool(body["reachProtectionThreshold"])

        wait_until(protected, f"{node.node_id} to list it under protection", timeout_s=5.0)
    cluster.deregister(cluster.nodes[0], service, ip, port)


def test_sigterm_stops_a_node_cleanly(fresh_cluster: RunningCluster) -> None:
    node = fresh_cluster.nodes[2]
    assert node.stop(timeout_s=10.0) == 0, node.log_tail()
    assert "stopped" in node.log_text(current_run_only=True).splitlines()[-1]
    survivors = fresh_cluster.nodes[:2]
    wait_until(lambda: all(fresh_cluster.peers_up(n) == 1 for n in survivors), "the survivors to see it down")


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
REG = {"serviceName": "badinput", "ip": "10.5.0.1", "port": "80"}

BAD_REQUESTS: list[tuple[str, str, str, dict[str, str], int, str]] = [
    # (case id, method, path, params, status, text the body must contain)
    ("no-service", "POST", f"{NS}/instance", {"ip": "10.5.0.1", "port": "80"}, 400,
     "Param 'serviceName' is required."),
    ("bad-ip", "POST", f"{NS}/instance", {**REG, "ip": "10.5.0.300"}, 400,
     "instance format invalid: Your IP address is spelled incorrectly"),
    ("bad-ip-chars", "POST", f"{NS}/instance", {**REG, "ip": "10.5.0.1;rm"}, 400,
     "instance format invalid: Your IP address is spelled incorrectly"),
    ("weight-20000", "POST", f"{NS}/instance", {**REG, "weight": "20000"}, 400,
     "instance format invalid: The weights range from 0.0 to 10000.0"),
    ("weight-nan", "POST", f"{NS}/instance", {**REG, "weight": "NaN"}, 400, "Param 'weight' is illegal"),
    ("bad-cluster", "POST", f"{NS}/instance", {**REG, "clusterName": "bad_cluster!"}, 400,
     "cluster name can only have these characters: 0-9a-zA-Z-, current: bad_cluster!"),
    ("bad-metadata", "POST", f"{NS}/instance", {**REG, "metadata": "{not json"}, 400,
     "metadata format incorrect:{not json"),
    ("nested-metadata", "POST", f"{NS}/instance", {**REG, "metadata": '{"a":{"b":1}}'}, 400,
     "metadata format incorrect"),
    ("persistent", "POST", f"{NS}/instance", {**REG, "ephemeral": "false"}, 400,
     "persistent instances are not supported"),
    ("unknown-route", "GET", f"{NS}/nope", {}, 501, f"no such api:GET:{NS}/nope"),
    ("port-70000", "POST", f"{NS}/instance", {**REG, "port": "70000"}, 400, "Param 'port' is illegal"),
    ("port-abc", "POST", f"{NS}/instance", {**REG, "port": "abc"}, 400, "Param 'port' is illegal"),
    ("no-port", "POST", f"{NS}/instance", {"serviceName": "badinput", "ip": "10.5.0.1"}, 400,
     "Param 'port' is required."),
    # healthyOnly and clusters are read as leniently as Nacos (issue 12); udpPort is not
    ("udp-port-abc", "GET", f"{NS}/instance/list", {"serviceName": "badinput", "udpPort": "abc"}, 400,
     'For input string: "abc"'),
    ("bad-service-name", "GET", f"{NS}/instance/list", {"serviceName": "bad name!"}, 400,
     "dom name can only have these characters"),
    ("bad-beat-json", "PUT", f"{NS}/instance/beat", {"serviceName": "badinput", "beat": "{oops"}, 400,
     "Param 'beat' is illegal"),
    ("beat-port-infinity", "PUT", f"{NS}/instance/beat",
     {"serviceName": "badinput", "beat": '{"ip":"10.5.0.1","port":Infinity}'}, 400, "Param 'beat' is illegal"),
    ("persistent-delete", "DELETE", f"{NS}/instance", {**REG, "ephemeral": "false"}, 400,
     "persistent instances are not supported"),
    ("threshold-2", "POST", f"{NS}/service", {"serviceName": "badinput", "protectThreshold": "2"}, 400,
     "Param 'protectThreshold' is illegal"),
    ("page-0", "GET", f"{NS}/service/list", {"pageNo": "0", "pageSize": "10"}, 400, "Param 'pageNo' is illegal"),
]


@pytest.mark.parametrize(
    ("method", "path", "params", "status", "text"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_input_gets_a_clear_4xx(
    cluster: RunningCluster, method: str, path: str, params: dict[str, str], status: int, text: str
) -> None:
    node = cluster.nodes[0]
    response = cluster.http.request(method, f"{node.url}{path}", params=params)
    assert (response.status_code, text in response.text) == (status, True), (response.status_code, response.text)


ODD_VALUES: dict[str, list[str]] = {
    "ip": ["", " ", "::1", "[::1]", "fe80::1%eth0", "a" * 300, "1.2.3", "1.2.3.4.5", "-1.2.3.4", "0x7f.1.1.1",
           "h\u00e9llo", "%00", "1.2.3.04"],
    "port": ["", "-1", "65536", "99999999999999999999", "1.5", "1e3", " 80", "0x50", "\u0668\u0660"],
    "weight": ["-1", "inf", "-inf", "1e309", "0", "0.001", "10000", "10000.0001", "abc", "1_0"],
    "metadata": ["[]", '"x"', "1", "null", '{"a":null}', '{"a":true}', '{"a":[1]}', "a=b,=c", "a", "{" * 1000,
                 '{"a":"' + "x" * 5000 + '"}', ",,,", "k=v=w"],
    "clusterName": ["None", "null", "", "a,b", "a b", "x" * 300, "\u00e9"],
    "serviceName": ["@@", "a@@", "@@a", "a@@b@@c", "x" * 300, "a b", "a/b", "\u00e9", "DEFAULT_GROUP@@ok"],
    "groupName": ["@@", "a@@b", "", "x" * 300],
    "namespaceId": ["", "a b", "x" * 200, "../etc"],
    "healthy": ["yes", "1", "TRUE", ""],
    "enabled": ["no", "0", "False"],
    "ephemeral": ["maybe", "FALSE", "True"],
}
BEAT_VALUES = ['{"ip":123}', "[]", "null", '{"port":"x"}', '{"port":99999}', '{"port":1e999}', '{"weight":"nan"}',
               '{"port":NaN}', '{"ip":"10.5.0.9","port":80,"metadata":[]}', '{"ip":"10.5.0.9","port":80,"cluster":"a b"}',
               '{"ip":"10.5.0.9","port":80,"weight":-Infinity}', '{"ip":"10.5.0.9","port":[80]}', "1" * 5000]


def test_odd_values_never_get_a_5xx(cluster: RunningCluster) -> None:
    """Every parameter of every instance route, with odd values: never a 5xx, and 4xx bodies say something."""
    node = cluster.nodes[1]
    base = {"serviceName": unique("odd"), "ip": "10.5.0.2", "port": "81"}
    server_errors: list[str] = []
    checked = 0
    routes = [("POST", f"{NS}/instance"), ("PUT", f"{NS}/instance"), ("DELETE", f"{NS}/instance"),
              ("GET", f"{NS}/instance"), ("GET", f"{NS}/instance/list"), ("PUT", f"{NS}/instance/beat"),
              ("PATCH", f"{NS}/instance"), ("POST", f"{NS}/service"), ("GET", f"{NS}/service"),
              ("GET", f"{NS}/operator/distro/server")]
    cases: list[tuple[str, str, dict[str, str]]] = []
    for name, values in ODD_VALUES.items():
        for value in values:
            for method, path in routes:
                cases.append((method, path, {**base, name: value}))
    for value in BEAT_VALUES:
        cases.append(("PUT", f"{NS}/instance/beat", {"serviceName": base["serviceName"], "beat": value}))
    for method, path in routes:
        cases.append((method, path, {}))
    for method, path, params in cases:
        response = cluster.http.request(method, f"{node.url}{path}", params=params)
        checked += 1
        if response.status_code >= 500:
            server_errors.append(f"{method} {path} {json.dumps(params)[:200]} -> {response.status_code} "
                                 f"{response.text[:200]}")
        elif response.status_code >= 400:
            assert response.text.strip(), f"empty {response.status_code} body for {method} {path} {params}"
    # Raw requests with broken encodings.
    for raw_query in ("serviceName=%ff%fe&ip=10.5.0.2&port=81", "serviceName=a%zz", "serviceName=a&&&=&ip",
                      "serviceName=" + "%" * 10):
        response = cluster.http.post(f"{node.url}{NS}/instance?{raw_query}")
        checked += 1
        if response.status_code >= 500:
            server_errors.append(f"POST ?{raw_query} -> {response.status_code} {response.text[:200]}")
    assert cluster.http.get(f"{node.url}/healthz").status_code == 200
    assert server_errors == [], f"{len(server_errors)} of {checked} requests got a 5xx:\n" + "\n".join(server_errors)


def test_metadata_with_a_lone_surrogate_is_refused(cluster: RunningCluster) -> None:
    """JSON may escape a lone UTF-16 surrogate, which UTF-8 (and so msgpack) cannot carry: refuse it."""
    service = unique("surrogate")
    node = cluster.nodes[1]
    response = cluster.call(node, "POST", f"{NS}/instance", serviceName=service, ip="10.5.9.1", port=80,
                            metadata='{"k":"\\ud800"}')
    assert response.status_code == 400, response.text
    assert "metadata" in response.text
    for other in cluster.nodes:
        assert "distro_peers_up 2" in cluster.http.get(f"{other.url}/metrics").text.splitlines()


# ------------------------------------------------------------------------------------------------
# probes and operator routes
# ------------------------------------------------------------------------------------------------
def test_probes_metrics_and_operator_routes(cluster: RunningCluster) -> None:
    for node in cluster.nodes:
        assert cluster.http.get(f"{node.url}/healthz").status_code == 200
        assert cluster.http.get(f"{node.url}/readyz").status_code == 200
        metrics = cluster.http.get(f"{node.url}/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        lines = metrics.text.splitlines()
        assert "distro_peers_up 2" in lines, [line for line in lines if "peers" in line]
        assert "distro_ready 1" in lines
        assert any(line.startswith("distro_http_requests_total ") for line in lines)
        servers = cluster.call(node, "GET", f"{NS}/operator/servers").json()["servers"]
        assert sorted(s["address"] for s in servers) == sorted(cluster.addresses)
        assert [s["state"] for s in servers] == ["UP"] * 3
        assert sorted(s["nodeId"] for s in servers) == ["n1", "n2", "n3"]
        assert [s["address"] for s in servers if s["self"]] == [node.address]
        operator = cluster.call(node, "GET", f"{NS}/operator/metrics").json()
        assert operator["status"] == "UP"
    # Every node names the same owner for a service, and it is a member.
    service = unique("owned")
    owners = {cluster.owner_address(n, service) for n in cluster.nodes}
    assert len(owners) == 1 and owners <= set(cluster.addresses)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def test_counters_move(cluster: RunningCluster) -> None:
    """A write through a non-owner is forwarded (forwards_sent grows there) and replicated."""
    service = unique("counted")
    owner = cluster.owner(service)
    other = next(n for n in cluster.nodes if n is not owner)
    before: dict[str, Any] = {"fwd": _metric(cluster.http.get(f"{other.url}/metrics").text, "distro_forwards_sent_total")}
    cluster.register(other, service, "10.6.0.1", 80)
    after = _metric(cluster.http.get(f"{other.url}/metrics").text, "distro_forwards_sent_total")
    assert after >= before["fwd"] + 1
    for node in cluster.nodes:
        wait_until(lambda node=node: cluster.host(node, service, "10.6.0.1", 80), f"on {node.node_id}")
    cluster.deregister(owner, service, "10.6.0.1", 80)
