"""cluster/node/datadir.py: the data folder (SQLite) and the writer that carries Persist effects to it.

Proves: a new folder gets its schema and owner; what the writer commits comes back at the next open, as
the core's own entries; an older version never overwrites a newer one; tombstones are kept however old
(the record of a deletion), so a whole cluster restarted from its folders long after a deletion does not
bring the entry back from a node that missed it, until the core forgets the deletion (over
``max_deletion_records``): then its row goes, and only its row (a live or newer row of the entry stays); the folder refuses another node id, another format, a second user
(the lock) and rows it cannot read, naming the path, and leaves the file as it was; the writer coalesces
what piles up into one transaction, reports the highest sequence number written, and retries a failed
commit without reporting it written.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import trio
import trio.testing

from cluster.node.datadir import (
    DB_FILE,
    DataDir,
    DataDirError,
    DiskWriter,
    Forgotten,
    Row,
    default_data_dir,
)
from distro.clusterdata import NAMESPACES_KEY, ClusterMeta, HealthChecker, NamespaceInfo, cluster_entry_id
from distro.config import DistroConfig
from distro.datum import META_ENTRY_ID, Entry
from distro.effects import ForgetDeletion, Persist
from distro.model import ServiceKey, ServiceMeta
from distro.requests import ClientRequest, CreateNamespace, DeleteNamespace, Result
from distro.testing.disk import SimDisk
from distro.testing.harness import Harness
from distro.versions import Version
from tests.polling import wait_for

NOW_MS = 1_900_000_000_000
DAY_MS = 24 * 3600 * 1000
NODES = ("n1", "n2", "n3")
KEY = ServiceKey("prod", "DEFAULT_GROUP", "orders")


def persists() -> list[Persist]:
    return [
        Persist(1, NAMESPACES_KEY, "prod", Entry(Version(NOW_MS, 0, "n1"), NamespaceInfo("Production", "d", 5))),
        Persist(2, KEY, META_ENTRY_ID, Entry(Version(NOW_MS, 1, "n1"), ServiceMeta(0.5, {"k": "v"}))),
        Persist(3, KEY, cluster_entry_id("c1"),
                Entry(Version(NOW_MS, 2, "n2"), ClusterMeta(81, False, HealthChecker("HTTP", "/h"), {"z": "1"}))),
        Persist(4, NAMESPACES_KEY, "gone", Entry(Version(NOW_MS, 3, "n1"), None)),
    ]


def write_all(data_dir: DataDir, items: list[Persist]) -> list[int]:
    """Submit every Persist at once and run the writer until it reports them written; the reports."""
    reports: list[int] = []

    async def main() -> None:
        done = trio.Event()

        def on_durable(seq: int) -> None:
            reports.append(seq)
            if seq == items[-1].seq:
                done.set()

        writer = DiskWriter(data_dir, on_durable)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for persist in items:
                writer.submit(persist)
            with trio.fail_after(30):
                await done.wait()
            assert (writer.batches, writer.rows_written, writer.backlog) == (1, len(items), 0)
            nursery.cancel_scope.cancel()

    trio.run(main)
    return reports


def test_what_the_writer_commits_is_loaded_at_the_next_open(tmp_path: Path) -> None:
    folder = tmp_path / "n1"
    data_dir = DataDir.open(folder, "n1")
    assert data_dir.take_loaded() == () and (folder / DB_FILE).exists()
    assert write_all(data_dir, persists()) == [4]  # one batch, reported once, up to its highest seq
    data_dir.close()
    again = DataDir.open(folder, "n1")
    loaded = sorted(again.take_loaded(), key=lambda item: (str(item[0]), item[1]))
    expected = sorted(((p.key, p.entry_id, p.entry) for p in persists()), key=lambda item: (str(item[0]), item[1]))
    assert loaded == expected and again.take_loaded() == ()
    again.close()


def test_an_older_version_never_overwrites_a_newer_one(tmp_path: Path) -> None:
    data_dir = DataDir.open(tmp_path / "n1", "n1")
    # Each writer is a new one (a node's next start), so each numbers from 1 again.
    newer = Persist(1, KEY, META_ENTRY_ID, Entry(Version(NOW_MS, 5, "n1"), ServiceMeta(0.9)))
    older = Persist(1, KEY, META_ENTRY_ID, Entry(Version(NOW_MS, 4, "n2"), ServiceMeta(0.1)))
    write_all(data_dir, [newer])
    write_all(data_dir, [older])
    data_dir.close()
    again = DataDir.open(tmp_path / "n1", "n1")
    assert again.take_loaded() == ((KEY, META_ENTRY_ID, newer.entry),)
    again.close()


def test_tombstones_are_kept_however_old(tmp_path: Path) -> None:
    data_dir = DataDir.open(tmp_path / "n1", "n1")
    year_ms = 365 * DAY_MS
    old = Persist(1, NAMESPACES_KEY, "old", Entry(Version(NOW_MS - year_ms, 0, "n1"), None))
    young = Persist(2, NAMESPACES_KEY, "young", Entry(Version(NOW_MS - 1000, 0, "n1"), None))
    write_all(data_dir, [old, young])
    data_dir.close()
    again = DataDir.open(tmp_path / "n1", "n1")
    assert sorted(entry_id for _, entry_id, _ in again.take_loaded()) == ["old", "young"]
    again.close()


def test_a_forgotten_deletion_drops_its_tombstone_row_and_nothing_newer(tmp_path: Path) -> None:
    data_dir = DataDir.open(tmp_path / "n1", "n1")

    def at(counter: int) -> Version:
        return Version(NOW_MS, counter, "n1")

    rows = [
        Persist(1, NAMESPACES_KEY, "gone", Entry(at(1), None)),
        Persist(2, NAMESPACES_KEY, "deleted-again", Entry(at(2), None)),
        Persist(3, NAMESPACES_KEY, "created-again", Entry(at(3), NamespaceInfo("Back"))),
        Persist(4, KEY, META_ENTRY_ID, Entry(at(5), None)),
        Persist(5, NAMESPACES_KEY, "kept", Entry(at(6), None)),
    ]
    write_all(data_dir, rows)
    forget = [
        ForgetDeletion(NAMESPACES_KEY, "gone", at(1)),
        ForgetDeletion(NAMESPACES_KEY, "deleted-again", at(1)),  # the row is a later deletion: it stays
        ForgetDeletion(NAMESPACES_KEY, "created-again", at(4)),  # the row is live: it stays
        ForgetDeletion(KEY, META_ENTRY_ID, at(5)),
    ]
    reports: list[int] = []

    async def main() -> None:
        writer = DiskWriter(data_dir, reports.append)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for effect in forget:
                writer.submit(effect)
            await wait_for(lambda: writer.batches == 1 and writer.backlog == 0, what="the batch")
            assert (writer.rows_written, writer.rows_forgotten) == (0, 4)
            nursery.cancel_scope.cancel()

    # trio's real clock: the batch is written by a worker thread, and a mock clock that jumps whenever every
    # task waits would run the poll's deadline out in virtual time while the thread is still at the disk.
    trio.run(main)
    assert reports == []  # no Persist in the batch: nothing new is durable
    data_dir.close()
    again = DataDir.open(tmp_path / "n1", "n1")
    assert sorted(entry_id for _, entry_id, _ in again.take_loaded()) == ["created-again", "deleted-again", "kept"]
    again.close()


def test_a_deletion_survives_a_full_restart_long_after_it_was_collected(tmp_path: Path) -> None:
    """n3 is down while a namespace is deleted; the others collect the tombstone (entry floors in memory),
    then every node stops. Restarted from their folders eight days later, the two that saw the deletion
    load its tombstone (the folder kept it: before, it was dropped after 7 days), so n3's stale copy is
    refused and deleted again instead of coming back everywhere."""
    config = DistroConfig(cluster_size=3, durable_writes=True)
    h = Harness(NODES, config)
    h.start()
    assert deliver_answer(h, "n1", CreateNamespace("gone", "Gone")) == Result(200, "true")
    assert deliver_answer(h, "n1", CreateNamespace("kept", "Kept")) == Result(200, "true")
    h.crash("n3")
    h.advance(config.peer_timeout_ms + config.ping_interval_ms)
    assert deliver_answer(h, "n1", DeleteNamespace("gone")) == Result(200, "true")
    h.advance(config.tombstone_ttl_ms + 2 * config.instance_expire_ms + config.gc_interval_ms)
    for node_id in ("n1", "n2"):
        assert h[node_id].store.entry(NAMESPACES_KEY, "gone") is None  # collected from memory
        assert h[node_id].statistics().entry_floors == 1

    later = Harness(NODES, config, now_ms=h.now_ms + 8 * DAY_MS)
    for node_id in NODES:  # each node's folder, written and opened as the runtime does
        folder = tmp_path / node_id
        data_dir = DataDir.open(folder, node_id)
        items = h.disks[node_id].items()
        write_all(data_dir, [Persist(seq, *item) for seq, item in enumerate(items, start=1)])
        data_dir.close()
        data_dir = DataDir.open(folder, node_id)
        later.disks[node_id] = SimDisk()
        for key, entry_id, entry in data_dir.take_loaded():
            later.disks[node_id].write(Persist(0, key, entry_id, entry))
        data_dir.close()
        later.boot(node_id)
    later.start()
    later.advance(config.peer_timeout_ms + 3 * config.verify_interval_ms)
    for node_id in NODES:
        assert [ns for ns, _ in later[node_id].namespaces()] == ["kept"], node_id


def deliver_answer(h: Harness, node_id: str, request: ClientRequest) -> Result:
    """Send a request and run the cluster until it is answered."""
    rid, result = h.client(node_id, request)
    h.advance(h.config.sync_delay_ms)
    if result is not None:
        return result
    (reply,) = [r.result for r in h.outputs[node_id].replies if r.request_id == rid]
    return reply


def test_the_folder_refuses_another_node_a_second_user_and_another_format(tmp_path: Path) -> None:
    folder = tmp_path / "n1"
    data_dir = DataDir.open(folder, "n1")
    with pytest.raises(DataDirError, match=f"data dir {folder} is in use by pid"):
        DataDir.open(folder, "n1")
    data_dir.close()
    with pytest.raises(DataDirError, match=f"data dir {folder} belongs to node 'n1', not to this node 'n2'"):
        DataDir.open(folder, "n2")
    with sqlite3.connect(folder / DB_FILE) as db:
        db.execute("UPDATE meta SET value = '9' WHERE name = 'format'")
    with pytest.raises(DataDirError, match="format '9' is not '1'"):
        DataDir.open(folder, "n1")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("{not json", "not JSON"),
        (json.dumps(["n", "a namespace under a service", "", 0]), "an entry cannot be read"),
        (json.dumps(["m", 7.0, {}, "none", False]), "protect threshold"),
    ],
)
def test_a_row_it_cannot_read_is_refused_and_left_alone(tmp_path: Path, value: str, reason: str) -> None:
    folder = tmp_path / "n1"
    DataDir.open(folder, "n1").close()
    with sqlite3.connect(folder / DB_FILE) as db:
        db.execute("INSERT INTO entries VALUES (?, ?, 1, 0, 'n1', ?)", (str(KEY), META_ENTRY_ID, value))
    before = (folder / DB_FILE).read_bytes()
    with pytest.raises(DataDirError, match=reason) as refused:
        DataDir.open(folder, "n1")
    assert str(folder) in str(refused.value) and "Restore the folder from a backup" in str(refused.value)
    assert (folder / DB_FILE).read_bytes() == before


def test_a_failed_commit_is_retried_and_reported_only_once_written(tmp_path: Path) -> None:
    data_dir = DataDir.open(tmp_path / "n1", "n1")
    real_write = data_dir.write
    failures = [sqlite3.OperationalError("disk I/O error")]

    def flaky_write(rows: list[Row], forgotten: list[Forgotten] | None = None) -> None:
        if failures:
            raise failures.pop()
        real_write(rows, forgotten)

    data_dir.write = flaky_write  # type: ignore[method-assign]
    reports: list[int] = []

    async def main() -> None:
        written = trio.Event()

        def on_durable(seq: int) -> None:
            reports.append(seq)
            written.set()

        writer = DiskWriter(data_dir, on_durable)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            writer.submit(persists()[0])
            await written.wait()  # the retry delay passes on trio's mock clock, not in real time
            assert writer.errors == 1 and writer.batches == 1 and writer.backlog == 0
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert reports == [1]
    data_dir.close()


def test_a_sequence_number_never_handed_over_holds_the_report_back(tmp_path: Path) -> None:
    """The writer reports only a sequence number it had whole: every Persist up to it handed over before
    its batch began. Persist 2 committed while 1 never came (its hand-over failed) reports nothing; once 1
    comes and is committed, 2 is reported. (It used to report the highest number it had seen, which would
    have released the answer to write 1 although it was not on disk.)"""
    data_dir = DataDir.open(tmp_path / "n1", "n1")
    first, second = persists()[:2]
    reports: list[int] = []

    async def main() -> None:
        writer = DiskWriter(data_dir, reports.append)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            writer.submit(second)
            await wait_for(lambda: writer.batches == 1 and writer.backlog == 0, what="the first batch")
            assert reports == []
            writer.submit(first)
            await wait_for(lambda: writer.batches == 2, what="the second batch")
            assert reports == [2]
            nursery.cancel_scope.cancel()

    trio.run(main)  # trio's real clock: the batches are written by a worker thread
    data_dir.close()


def test_a_persist_handed_over_again_does_not_replace_a_newer_one_of_its_slot(tmp_path: Path) -> None:
    """The runtime hands a Persist whose hand-over failed to the writer again at its next dispatch, after
    the Persists that came meanwhile: one of them may be a newer version of the same slot, still waiting.
    The older must not take its place: the writer would then report the newer one's number (its answer
    released) while only the older version is on disk."""
    data_dir = DataDir.open(tmp_path / "n1", "n1")
    older = Persist(1, KEY, META_ENTRY_ID, Entry(Version(NOW_MS, 4, "n1"), ServiceMeta(0.1)))
    newer = Persist(2, KEY, META_ENTRY_ID, Entry(Version(NOW_MS, 5, "n1"), ServiceMeta(0.9)))
    reports: list[int] = []

    async def main() -> None:
        writer = DiskWriter(data_dir, reports.append)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            writer.submit(newer)  # seq 1's hand-over failed: 2 came first, then 1 again
            writer.submit(older)
            await wait_for(lambda: writer.batches == 1, what="the batch")
            assert (reports, writer.rows_written, writer.backlog) == ([2], 1, 0)
            nursery.cancel_scope.cancel()

    trio.run(main)  # trio's real clock: the batch is written by a worker thread
    data_dir.close()
    again = DataDir.open(tmp_path / "n1", "n1")
    assert again.take_loaded() == ((KEY, META_ENTRY_ID, newer.entry),)
    again.close()


def test_the_default_folder_is_named_after_the_node() -> None:
    assert default_data_dir("n1") == "data/n1"
    assert default_data_dir("10.0.0.5:8848") == "data/10.0.0.5_8848"
    assert default_data_dir("..") == "data/node"
