"""A node's data folder: the cluster data it keeps across restarts, in SQLite (Python's standard library).

What is in it (docs/operations.md, "Data folder")::

    <data-dir>/registry.db      the entries (plus registry.db-wal and registry.db-shm while the node runs)
    <data-dir>/LOCK             locked (flock) by the node using the folder; holds its pid

    meta(name PRIMARY KEY, value)                      "node_id" and "format" ("1")
    entries(key, entry_id, ms, counter, node, value)   one row per cluster-data entry, keyed (key, entry_id);
                                                       value: JSON of the entry's value as the peer codec
                                                       writes it (distro.codec.encode_value), NULL for a
                                                       tombstone

Only cluster data is here: namespaces, service settings and cluster settings, with their versions and
tombstones (:mod:`distro.durability` says which entries). Ephemeral instances never are. A tombstone
stays after the core has collected it from memory: it is the node's record that the entry was deleted
(its *entry floor* in memory), which stops a stale copy of the entry from coming back after every node
restarted at once. One small row per deleted namespace or setting, until the core forgets the deletion
(over ``--max-deletion-records``, oldest first): a ``ForgetDeletion`` effect then deletes the row, so the
folder holds no more deletions than the memory does.

Why SQLite: it is in the standard library (nothing to install, nothing to run beside the node), its
transactions are atomic and crash-safe (a ``kill -9`` or a power cut in the middle of a write leaves the
previous state or the new one, never a torn file), ``PRAGMA quick_check`` detects a damaged file at start,
and the file can be read and backed up with the ``sqlite3`` tool while the node runs.

Durability: WAL journal with ``synchronous=FULL``, so every commit fsyncs the WAL before it returns. With
WAL, ``NORMAL`` would survive a process crash but could lose the last commits on a power cut or a kernel
crash; an acknowledged setting must survive both. The cost is one fsync per *batch*: the writer
(:class:`DiskWriter`) commits everything that piled up while the previous commit ran in one transaction,
and cluster data changes rarely anyway.

Never on the event loop: :meth:`DataDir.open` (lock, integrity check, load) runs before the node's trio
loop starts; afterwards every write runs in a worker thread (``trio.to_thread``), one at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import trio

from cluster.metrics import counter, gauge
from distro.codec import decode_message, encode_value
from distro.effects import ForgetDeletion, Persist
from distro.errors import DataDirError, ProtocolError
from distro.messages import Item, Items, SyncBatch

__all__ = [
    "DB_FILE",
    "FORMAT",
    "LOCK_FILE",
    "DataDir",
    "DataDirError",
    "DiskWriter",
    "Forgotten",
    "Row",
    "default_data_dir",
]

log = logging.getLogger("distro.datadir")

DB_FILE = "registry.db"
LOCK_FILE = "LOCK"
FORMAT = "1"
LOAD_CHUNK_ROWS = 10_000
WRITE_RETRY_S = (0.1, 0.5, 1.0, 2.0, 5.0)

_SCHEMA = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE entries (key TEXT NOT NULL, entry_id TEXT NOT NULL, ms INTEGER NOT NULL, "
    "counter INTEGER NOT NULL, node TEXT NOT NULL, value TEXT, PRIMARY KEY (key, entry_id)) WITHOUT ROWID",
)
_UPSERT = (
    "INSERT INTO entries (key, entry_id, ms, counter, node, value) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (key, entry_id) DO UPDATE SET ms = excluded.ms, counter = excluded.counter, "
    "node = excluded.node, value = excluded.value "
    "WHERE (excluded.ms, excluded.counter, excluded.node) > (entries.ms, entries.counter, entries.node)"
)

_FORGET = (
    "DELETE FROM entries WHERE key = ? AND entry_id = ? AND value IS NULL AND (ms, counter, node) <= (?, ?, ?)"
)

Row = tuple[str, str, int, int, str, str | None]
Forgotten = tuple[str, str, int, int, str]  # key, entry_id and the version of a tombstone row to delete

_RESTORE_HINT = (
    "Restore the folder from a backup (docs/operations.md, 'Data folder'), or move it aside to start this "
    "node empty: it then loads the cluster data from its peers (whatever only this node held is lost)."
)


def default_data_dir(node_id: str) -> str:
    """``data/<node id>`` (relative to the working directory), the id made safe for a folder name."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in node_id).strip(".") or "node"
    return os.path.join("data", safe)


class DataDir:
    """An open data folder, locked for this process. Build it with :meth:`open`."""

    def __init__(self, path: Path, node_id: str, db: sqlite3.Connection, lock: IO[str]) -> None:
        self.path = path
        self.node_id = node_id
        self._db = db
        self._lock = lock
        self._write_lock = threading.Lock()  # one writer at a time, whatever thread runs it
        self.loaded: Items = ()

    # -- opening (before the event loop) ---------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, node_id: str) -> DataDir:
        """Lock the folder, check the file, load its entries (kept in :attr:`loaded`).

        Raises :class:`DataDirError` naming the path and what to do, never loses what the folder holds.
        """
        folder = Path(path).absolute()
        if folder.exists() and not folder.is_dir():
            raise DataDirError(f"data dir {folder} is not a folder: give --data-dir a folder of its own")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataDirError(f"data dir {folder} cannot be created ({exc.strerror}): check the path and its "
                               "permissions, or give another --data-dir") from None
        lock = _lock(folder)
        try:
            db = _connect(folder)
            data_dir = cls(folder, node_id, db, lock)
            data_dir._check_owner()
            data_dir.loaded = data_dir._load()
        except BaseException:
            lock.close()
            raise
        return data_dir

    def _check_owner(self) -> None:
        db = self._db
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                with _transaction(db):
                    for statement in _SCHEMA:
                        db.execute(statement)
                    db.executemany("INSERT INTO meta VALUES (?, ?)", [("node_id", self.node_id), ("format", FORMAT)])
                return
            if not {"meta", "entries"} <= tables:
                raise DataDirError(f"data dir {self.path}: {DB_FILE} is not a registry data file. {_RESTORE_HINT}")
            meta = dict(db.execute("SELECT name, value FROM meta"))
        except sqlite3.DatabaseError as exc:
            raise DataDirError(f"data dir {self.path}: {DB_FILE} cannot be read ({exc}). {_RESTORE_HINT}") from None
        if meta.get("format") != FORMAT:
            raise DataDirError(
                f"data dir {self.path}: format {meta.get('format')!r} is not {FORMAT!r} (written by another version "
                "of distro-node?): start the version that wrote it, or move the folder aside to start empty"
            )
        owner = meta.get("node_id")
        if owner != self.node_id:
            raise DataDirError(
                f"data dir {self.path} belongs to node {owner!r}, not to this node {self.node_id!r}: give each node "
                f"its own --data-dir (or start this one with --node-id {owner})"
            )

    def _load(self) -> Items:
        items: list[Item] = []
        try:
            cursor = self._db.execute("SELECT key, entry_id, ms, counter, node, value FROM entries")
            while True:
                rows = cursor.fetchmany(LOAD_CHUNK_ROWS)
                if not rows:
                    break
                items.extend(self._decode(rows))
        except sqlite3.DatabaseError as exc:
            raise DataDirError(f"data dir {self.path}: {DB_FILE} cannot be read ({exc}). {_RESTORE_HINT}") from None
        return tuple(items)

    def _decode(self, rows: list[Any]) -> Iterator[Item]:
        encoded = []
        for key, entry_id, ms, counter_, node, value in rows:
            try:
                decoded_value = None if value is None else json.loads(value)
            except (TypeError, ValueError, RecursionError):
                raise DataDirError(
                    f"data dir {self.path}: entry {key} {entry_id} cannot be read (not JSON). {_RESTORE_HINT}"
                ) from None
            encoded.append([key, entry_id, ms, counter_, node, decoded_value])
        try:
            message = decode_message(["sync", encoded])
        except ProtocolError as exc:
            raise DataDirError(f"data dir {self.path}: an entry cannot be read ({exc}). {_RESTORE_HINT}") from None
        assert isinstance(message, SyncBatch)
        return iter(message.items)

    def take_loaded(self) -> Items:
        """What was loaded at :meth:`open`, once (the memory is given back)."""
        loaded, self.loaded = self.loaded, ()
        return loaded

    # -- writing (in a worker thread) ------------------------------------------------------------
    def write(self, rows: list[Row], forgotten: list[Forgotten] | None = None) -> None:
        """Commit ``rows`` in one transaction (a row older than the stored version changes nothing), then
        delete the ``forgotten`` tombstones (a row newer than the version given, or live, stays)."""
        with self._write_lock, _transaction(self._db):
            self._db.executemany(_UPSERT, rows)
            if forgotten:
                self._db.executemany(_FORGET, forgotten)

    def close(self) -> None:
        """Close the file and release the folder."""
        with self._write_lock:
            self._db.close()
        self._lock.close()


def _lock(folder: Path) -> IO[str]:
    try:
        lock = open(folder / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 (held until close)
    except OSError as exc:
        raise DataDirError(f"data dir {folder} cannot be used ({exc.strerror}): check its permissions") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise DataDirError(
            f"data dir {folder} is in use by {'pid ' + holder if holder.isdigit() else holder}: "
            "two nodes cannot share a data folder; give this one its own --data-dir"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def _connect(folder: Path) -> sqlite3.Connection:
    path = folder / DB_FILE
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    except sqlite3.Error as exc:
        raise DataDirError(f"data dir {folder}: {DB_FILE} cannot be opened ({exc}). {_RESTORE_HINT}") from None
    try:
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        db.execute("PRAGMA synchronous = FULL")
        check = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        db.close()
        raise DataDirError(f"data dir {folder}: {DB_FILE} is damaged or not a database ({exc}). {_RESTORE_HINT}") from None
    if str(mode).lower() != "wal" or check != [("ok",)]:
        db.close()
        problems = "; ".join(str(row[0]) for row in check[:3])
        raise DataDirError(f"data dir {folder}: {DB_FILE} is damaged ({problems or mode}). {_RESTORE_HINT}")
    return db


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _row(persist: Persist) -> Row:
    version, value = persist.entry
    encoded = None if value is None else json.dumps(encode_value(value), ensure_ascii=False, separators=(",", ":"))
    return (str(persist.key), persist.entry_id, version.ms, version.counter, version.node, encoded)


class DiskWriter:
    """Writes the core's ``Persist`` and ``ForgetDeletion`` effects to the data folder, in batches, off the
    event loop.

    :meth:`submit` (called from the runtime's effect dispatch) only records the effect; at most one entry
    and one forgotten deletion per slot wait (a newer version replaces the one not yet written, never the
    reverse, even when an older one is handed over again after a failure), so the
    backlog is bounded by the cluster data itself. :meth:`run` commits what waits in one transaction in a
    worker thread, then reports through ``on_durable`` the highest ``seq`` it had *whole* as the batch began
    (every ``Persist`` from 1 up to it submitted: each is in this batch or an earlier one, or replaced by a
    newer version of its slot that is): a number the runtime failed to hand over holds the report back until
    it comes (cluster/node/pump.py hands it over again), so its answer cannot be released by a later one's.
    A failed commit is logged and retried (the answers waiting for it stay held: nothing is acknowledged that
    is not on disk).
    """

    def __init__(self, data_dir: DataDir, on_durable: Callable[[int], None]) -> None:
        self._data_dir = data_dir
        self._on_durable = on_durable
        self._pending: dict[tuple[str, str], Persist] = {}
        self._forgotten: dict[tuple[str, str], ForgetDeletion] = {}
        self._whole_seq = 0  # every Persist from seq 1 up to here was submitted
        self._early: set[int] = set()  # seqs submitted beyond a gap (one not submitted yet)
        self._wake = trio.Event()
        self.batches = 0
        self.rows_written = 0
        self.rows_forgotten = 0
        self.errors = 0

    def submit(self, effect: Persist | ForgetDeletion) -> None:
        """Queue one entry, or one tombstone row to delete, for the next batch."""
        slot = (str(effect.key), effect.entry_id)
        if isinstance(effect, Persist):
            waiting = self._pending.get(slot)
            # A higher seq is a newer version of the slot (the core persists only what it applied). A lower
            # one comes when the runtime hands a failed Persist over again (cluster/node/pump.py), after the
            # newer one: it must not take its place (the newer one's number would be reported unwritten).
            if waiting is None or effect.seq > waiting.seq:
                self._pending[slot] = effect
            self._count_in(effect.seq)
        else:
            queued = self._forgotten.get(slot)
            if queued is None or effect.version > queued.version:
                self._forgotten[slot] = effect
        self._wake.set()

    def _count_in(self, seq: int) -> None:
        if seq != self._whole_seq + 1:
            if seq > self._whole_seq:
                self._early.add(seq)
            return
        self._whole_seq = seq
        early = self._early
        while self._whole_seq + 1 in early:
            self._whole_seq += 1
            early.remove(self._whole_seq)

    @property
    def backlog(self) -> int:
        """Entries (and tombstone rows to delete) waiting for the next batch."""
        return len(self._pending) + len(self._forgotten)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write batches until cancelled (a commit under way finishes first: threads are not abandoned)."""
        task_status.started()
        failures = 0
        while True:
            while not self._pending and not self._forgotten:
                self._wake = trio.Event()
                await self._wake.wait()
            batch, self._pending = self._pending, {}
            forget, self._forgotten = self._forgotten, {}
            seq = self._whole_seq
            rows = [_row(persist) for persist in batch.values()]
            doomed = [(str(f.key), f.entry_id, *f.version) for f in forget.values()]
            try:
                await trio.to_thread.run_sync(self._data_dir.write, rows, doomed)
            except (sqlite3.Error, OSError) as exc:
                self.errors += 1
                for slot, persist in batch.items():
                    self._pending.setdefault(slot, persist)  # a newer version queued meanwhile wins
                for slot, forgotten in forget.items():
                    self._forgotten.setdefault(slot, forgotten)
                delay = WRITE_RETRY_S[min(failures, len(WRITE_RETRY_S) - 1)]
                failures += 1
                log.error("cannot write %d entries to %s (%s): retrying in %.1f s", len(rows), self._data_dir.path,
                          exc, delay)
                await trio.sleep(delay)
                continue
            failures = 0
            self.batches += 1
            self.rows_written += len(rows)
            self.rows_forgotten += len(doomed)
            if rows and seq:
                self._on_durable(seq)

    def render_metrics(self) -> str:
        """The writer's counters for /metrics."""
        return "".join([
            counter("distro_disk_batches_total", "Transactions committed to the data folder.", self.batches),
            counter("distro_disk_entries_written_total", "Cluster-data entries written to the data folder.",
                    self.rows_written),
            counter("distro_disk_tombstones_forgotten_total",
                    "Tombstone rows deleted from the data folder with the deletions the node forgot.",
                    self.rows_forgotten),
            counter("distro_disk_write_errors_total", "Failed commits to the data folder (retried).", self.errors),
            gauge("distro_disk_backlog_entries", "Cluster-data entries waiting to be written.", self.backlog),
        ])
