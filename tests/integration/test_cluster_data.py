"""Cluster data on real ``distro-node`` processes with their data folders (``--data-dir``).

Proves: namespaces, service settings and cluster settings created on one node are read on another, and
after all three nodes stop and start again every node still has them (from its own disk: instances do
not come back, they are not cluster data); a node killed with SIGKILL in the middle of a stream of
setting writes loses none that it acknowledged (a single node, so the disk is the only place they can
come back from); a service a registration created outlives its last instance; a damaged data folder, a
folder written by another node id and a folder in use are refused at start with exit code 2 and a line
naming the path and what to do, and the damaged file is left as it was; a client creating and deleting
namespaces and services in a loop leaves at most ``--max-deletion-records`` deletions remembered, in
memory and in the data folder (the rest forgotten, oldest first, counted on ``/metrics`` and warned about in
the log), also after a restart.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster.tools.launcher import LocalNode, free_ports, node_command
from tests.integration.conftest import NS, START_TIMEOUT_S, RunningCluster, unique, wait_until

NAMESPACES = "/nacos/v1/console/namespaces"


def namespaces(cluster: RunningCluster, node: LocalNode) -> dict[str, dict[str, Any]]:
    response = cluster.call(node, "GET", NAMESPACES)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 200 and body["data"][0]["namespace"] == ""
    return {row["namespace"]: row for row in body["data"]}


def service(cluster: RunningCluster, node: LocalNode, name: str, namespace: str) -> dict[str, Any] | None:
    response = cluster.call(node, "GET", f"{NS}/service", serviceName=name, namespaceId=namespace)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def post_form(cluster: RunningCluster, node: LocalNode, method: str, path: str, **form: Any) -> httpx.Response:
    return cluster.http.request(method, f"{node.url}{path}", data=form)


def test_namespaces_and_settings_are_seen_everywhere_and_survive_a_full_restart(
    fresh_cluster: RunningCluster,
) -> None:
    cluster = fresh_cluster
    n1, n2, n3 = cluster.nodes
    svc, implicit = unique("cfg"), unique("imp")
    created = post_form(cluster, n1, "POST", NAMESPACES, customNamespaceId="dev", namespaceName="Development",
                        namespaceDesc="the dev team")
    assert (created.status_code, created.json()) == (200, True)
    assert post_form(cluster, n2, "POST", NAMESPACES, customNamespaceId="dev", namespaceName="x").json() is False
    checker = json.dumps({"type": "HTTP", "path": "/health", "headers": "", "expectedResponseCode": 200})
    assert cluster.call(n1, "POST", f"{NS}/service", serviceName=svc, namespaceId="dev", protectThreshold="0.4",
                        metadata=json.dumps({"team": "a"})).text == "ok"
    assert cluster.call(n1, "PUT", f"{NS}/cluster", serviceName=svc, namespaceId="dev", clusterName="c1",
                        checkPort="8080", useInstancePort4Check="false", healthChecker=checker,
                        metadata=json.dumps({"zone": "z1"})).text == "ok"
    cluster.register(n1, implicit, "10.9.0.1", 80)
    expected_cluster = {"name": "c1", "healthChecker": json.loads(checker), "metadata": {"zone": "z1"}}

    def settled(node: LocalNode) -> bool:
        found = service(cluster, node, svc, "dev")
        return (
            "dev" in namespaces(cluster, node)
            and found is not None
            and found["protectThreshold"] == 0.4
            and found["clusters"] == [expected_cluster]
        )

    for node in (n2, n3):  # written on n1, read on the others
        wait_until(lambda node=node: settled(node), f"the settings on {node.node_id}")
    assert namespaces(cluster, n2)["dev"] == {
        "namespace": "dev", "namespaceShowName": "Development", "namespaceDesc": "the dev team",
        "quota": 200, "configCount": 0, "type": 2,
    }

    codes = cluster.local.stop()  # all three, SIGTERM
    assert set(codes.values()) == {0}, codes
    cluster.local.start()
    cluster.local.wait_ready(START_TIMEOUT_S)
    for node in cluster.nodes:
        assert namespaces(cluster, node)["dev"]["namespaceShowName"] == "Development"
        found = service(cluster, node, svc, "dev")
        assert found is not None and found["metadata"] == {"team": "a"} and found["protectThreshold"] == 0.4
        assert found["clusters"] == [expected_cluster]
        assert service(cluster, node, implicit, "public") is None  # instances live by beats, not on disk
        assert "data dir" in node.log_text(current_run_only=True)


def test_a_service_created_by_a_registration_outlives_its_last_instance(cluster: RunningCluster) -> None:
    n1, n2, _ = cluster.nodes
    name = unique("empty")
    cluster.register(n1, name, "10.9.1.1", 80)
    # seen on n2 first: otherwise "no hosts on n2" could be read before the registration even arrived there
    wait_until(lambda: cluster.host(n2, name, "10.9.1.1", 80) is not None, "the instance on n2")
    cluster.deregister(n1, name, "10.9.1.1", 80)
    wait_until(lambda: cluster.hosts(n2, name) == [], "the instance to be gone everywhere")
    found = service(cluster, n2, name, "public")
    assert found is not None and found["clusters"] == []  # kept until the empty-service cleaner's grace


class SettingWriter(threading.Thread):
    """Creates namespaces and services with settings, one after another, and records each acknowledged one."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.url, self.prefix = url, prefix
        self.acked_services: list[str] = []
        self.acked_namespaces: list[str] = []
        self.enough = threading.Event()
        self.stopped = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5.0) as http:
            for i in range(100_000):
                if self.stopped.is_set():
                    return
                try:
                    if i % 3 == 0:
                        ns = f"{self.prefix}-ns-{i}"
                        answer = http.post(f"{self.url}{NAMESPACES}", data={"customNamespaceId": ns,
                                                                            "namespaceName": f"n{i}"})
                        if answer.status_code == 200 and answer.json() is True:
                            self.acked_namespaces.append(ns)
                    else:
                        name = f"{self.prefix}-svc-{i}"
                        answer = http.post(f"{self.url}{NS}/service", params={
                            "serviceName": name, "metadata": json.dumps({"i": str(i)}), "protectThreshold": "0.5"})
                        if answer.text == "ok":
                            self.acked_services.append(name)
                except httpx.HTTPError:
                    return  # the node is gone: whatever is in flight was never acknowledged
                if len(self.acked_services) + len(self.acked_namespaces) >= 60:
                    self.enough.set()


def test_sigkill_in_a_stream_of_writes_loses_no_acknowledged_setting(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    node = LocalNode("solo", port, [f"127.0.0.1:{port}"], "s" * 64, log_path=tmp_path / "solo.log",
                     data_dir=tmp_path / "solo-data", hermetic_env=True,
                     node_args=["--snapshot-timeout-ms", "300"])
    node.start()
    http = httpx.Client(timeout=5.0)
    try:
        wait_until(lambda: node.is_ready(http), "the node to start", START_TIMEOUT_S)
        writers = [SettingWriter(node.url, f"w{i}") for i in range(3)]
        for writer in writers:
            writer.start()
        for writer in writers:
            assert writer.enough.wait(60), "the writers did not get enough acknowledgements"
        node.kill()  # SIGKILL while the writers are still writing
        for writer in writers:
            writer.stopped.set()
            writer.join(10)
        acked_services = [name for w in writers for name in w.acked_services]
        acked_namespaces = {ns for w in writers for ns in w.acked_namespaces}
        assert len(acked_services) >= 100 and len(acked_namespaces) >= 30
        node.start()
        wait_until(lambda: node.is_ready(http), "the node to start again", START_TIMEOUT_S)
        listed = {row["namespace"] for row in http.get(f"{node.url}{NAMESPACES}").json()["data"]}
        assert sorted(acked_namespaces - listed) == []
        lost = []
        for name in acked_services:
            answer = http.get(f"{node.url}{NS}/service", params={"serviceName": name})
            if answer.status_code != 200 or answer.json()["metadata"] != {"i": name.rsplit("-", 1)[1]}:
                lost.append(name)
        assert lost == []
    finally:
        http.close()
        node.stop()


def _start_node(data_dir: Path, node_id: str = "n1") -> subprocess.CompletedProcess[str]:
    (port,) = free_ports(1)
    command = [*node_command(), "--node-id", node_id, "--host", "127.0.0.1", "--port", str(port),
               "--data-dir", str(data_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_data_folder_is_refused_with_exit_2(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    db = folder / "registry.db"
    if damage == "garbage":
        db.write_bytes(b"this is not a database\n" * 100)
    else:  # a real registry file cut short in the middle of a page
        import sqlite3

        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [("node_id", "n1"), ("format", "1")])
            conn.execute("CREATE TABLE entries (key TEXT, entry_id TEXT, ms INT, counter INT, node TEXT, value TEXT,"
                         " PRIMARY KEY (key, entry_id)) WITHOUT ROWID")
            conn.executemany("INSERT INTO entries VALUES (?, ?, 1, 0, 'n1', ?)",
                             [(f"public##G@@s{i}", "#meta", json.dumps(["m", 0.0, {"k": "v" * 200}, "none", False]))
                              for i in range(400)])
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 2 + 100])
    before = db.read_bytes()
    result = _start_node(folder)
    assert result.returncode == 2, result.stderr
    assert str(folder) in result.stderr and "Restore the folder from a backup" in result.stderr
    assert db.read_bytes() == before  # nothing overwritten


def test_a_data_folder_of_another_node_or_in_use_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    (port,) = free_ports(1)
    owner = LocalNode("n1", port, [], "s" * 64, data_dir=folder, log_path=tmp_path / "n1.log", hermetic_env=True,
                      node_args=["--snapshot-timeout-ms", "300"])
    owner.start()
    try:
        with httpx.Client(timeout=2.0) as http:
            wait_until(lambda: owner.is_ready(http), "n1 to start", START_TIMEOUT_S)
        in_use = _start_node(folder, "n1")
        assert in_use.returncode == 2 and "is in use by pid" in in_use.stderr, in_use.stderr
    finally:
        owner.stop()
    other = _start_node(folder, "n2")
    assert other.returncode == 2
    assert f"data dir {folder} belongs to node 'n1', not to this node 'n2'" in other.stderr
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    result = _start_node(not_a_folder)
    assert result.returncode == 2 and "is not a folder" in result.stderr


def metric(http: httpx.Client, node: LocalNode, name: str) -> float:
    """One unlabelled sample of a node's /metrics."""
    for line in http.get(f"{node.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def test_a_create_delete_loop_keeps_deletion_records_within_the_budget(tmp_path: Path) -> None:
    """With auth off any client may do this. The node remembers the 20 newest deletions (its budget) and
    forgets the rest, in memory (distro_entry_floors) and in its folder (the tombstone rows), so a restart
    loads no more than the budget either. Short TTL (twice the 1 s expiry) so the tombstones are collected
    within seconds; the test waits on the node's own counters, never on time."""
    budget, namespaces_made, services_made = 20, 60, 20
    (port,) = free_ports(1)
    folder = tmp_path / "solo-data"
    node = LocalNode("solo", port, [f"127.0.0.1:{port}"], "s" * 64, log_path=tmp_path / "solo.log",
                     data_dir=folder, hermetic_env=True,
                     node_args=["--snapshot-timeout-ms", "300", "--max-deletion-records", str(budget),
                                "--tombstone-ttl-ms", "0", "--heartbeat-timeout-ms", "500",
                                "--instance-expire-ms", "1000"])
    node.start()
    http = httpx.Client(timeout=5.0)
    try:
        wait_until(lambda: node.is_ready(http), "the node to start", START_TIMEOUT_S)
        for i in range(namespaces_made):
            ns = f"churn-{i}"
            assert http.post(f"{node.url}{NAMESPACES}", data={"customNamespaceId": ns, "namespaceName": ns}).json()
            assert http.request("DELETE", f"{node.url}{NAMESPACES}", params={"namespaceId": ns}).json() is True
        for i in range(services_made):
            name = f"churn-svc-{i}"
            assert http.post(f"{node.url}{NS}/service", params={"serviceName": name}).text == "ok"
            assert http.delete(f"{node.url}{NS}/service", params={"serviceName": name}).text == "ok"
        dropped = namespaces_made + services_made - budget

        def forgotten() -> bool:  # every tombstone collected, and the forgotten ones off the disk too
            return (metric(http, node, "distro_tombstones") == 0
                    and metric(http, node, "distro_disk_tombstones_forgotten_total") == dropped)

        wait_until(forgotten, "the tombstones to be collected and the oldest forgotten", 60)
        assert metric(http, node, "distro_entry_floors") + metric(http, node, "distro_key_floors") == budget
        assert metric(http, node, "distro_deletion_records_dropped_total") == dropped
        assert "deletions forgotten" in node.log_text()
        assert node.stop() == 0
        with sqlite3.connect(folder / "registry.db") as db:
            (rows,) = db.execute("SELECT count(*) FROM entries WHERE value IS NULL").fetchone()
        assert rows == budget

        node.start()  # loads the budget's worth of tombstones, collects them into floors, drops none
        wait_until(lambda: node.is_ready(http), "the node to start again", START_TIMEOUT_S)
        wait_until(lambda: metric(http, node, "distro_entry_floors") == budget, "the loaded deletions collected", 60)
        assert metric(http, node, "distro_deletion_records_dropped_total") == 0
    finally:
        http.close()
        node.stop()
