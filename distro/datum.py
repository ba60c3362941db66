"""Datums: per service key, a map of versioned entries; merge keeps the higher version per entry.

A datum maps an entry id to an :class:`Entry`. Instance entries are keyed ``cluster/ip:port``; the
service's own settings live under :data:`META_ENTRY_ID`, its clusters' settings under ``#cluster/<name>``,
and the reserved namespaces key holds one entry per namespace (:mod:`distro.clusterdata`). A deregistration is a tombstone (an entry whose
value is ``None``) so that it replicates and wins over older copies like any other write.

Because merge is "highest version wins" per entry, it is commutative, associative and idempotent: replicas
that have received the same set of entries hold the same datum, whatever the order, loss or duplication
of the messages that carried them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from hashlib import blake2b
from typing import Any, Final

from distro.clusterdata import IMPLICIT_ENTRY_ID, META_ENTRY_ID, ClusterMeta, NamespaceInfo, SettingText
from distro.model import Instance, ServiceMeta
from distro.versions import Version

__all__ = [
    "IMPLICIT_ENTRY_ID",
    "META_ENTRY_ID",
    "Datum",
    "Entry",
    "EntryValue",
    "datum_digest",
    "entry_hash",
    "merge_datums",
    "newer",
]


EntryValue = Instance | ServiceMeta | ClusterMeta | NamespaceInfo | SettingText | None


class Entry:
    """A versioned value. ``value is None`` marks a tombstone. Immutable (do not assign its fields).

    Built as ``Entry(version, value)`` and read as ``entry.version`` / ``entry.value`` (or unpacked,
    ``version, value = entry``), like the pair it stands for. It keeps the version's three parts in its own
    slots rather than a :class:`Version` object: a node holds one entry per instance of the whole cluster,
    and the pair cost 56 + 64 bytes where this costs 64 (``scripts/bench --memory-profile``).
    ``entry.version`` makes the :class:`Version` when asked; the hot paths read ``ms``, ``counter`` and
    ``node`` directly (:meth:`newer_than`, :func:`entry_hash`).
    """

    __slots__ = ("counter", "ms", "node", "value")

    def __init__(self, version: Version | tuple[int, int, str], value: EntryValue) -> None:
        self.ms: Final[int] = version[0]
        self.counter: Final[int] = version[1]
        self.node: Final[str] = version[2]
        self.value: Final[EntryValue] = value

    @property
    def version(self) -> Version:
        """The entry's version (a new :class:`Version` each time: compare entries with :meth:`newer_than`)."""
        return Version(self.ms, self.counter, self.node)

    @property
    def is_tombstone(self) -> bool:
        """True for a deletion marker."""
        return self.value is None

    def newer_than(self, other: Entry) -> bool:
        """Whether this entry's version is higher than ``other``'s (``version > other.version``, quicker)."""
        if self.ms != other.ms:
            return self.ms > other.ms
        if self.counter != other.counter:
            return self.counter > other.counter
        return self.node > other.node

    def _replace(self, **changes: Any) -> Entry:
        """A copy with ``version`` and/or ``value`` replaced (as a named tuple's ``_replace``)."""
        return Entry(changes.pop("version", self.version), changes.pop("value", self.value), **changes)

    def __iter__(self) -> Iterator[Any]:
        yield self.version
        yield self.value

    def __eq__(self, other: object) -> bool:
        if type(other) is not Entry:
            return NotImplemented
        return (
            self.ms == other.ms and self.counter == other.counter and self.node == other.node
            and self.value == other.value
        )

    def __hash__(self) -> int:
        return hash((self.ms, self.counter, self.node, self.value))

    def __repr__(self) -> str:
        return f"Entry(version={self.version!r}, value={self.value!r})"


Datum = dict[str, Entry]


def newer(a: Entry, b: Entry) -> Entry:
    """The entry that wins a merge of two versions of the same entry id."""
    return b if b.newer_than(a) else a


def merge_datums(left: Mapping[str, Entry], right: Mapping[str, Entry]) -> Datum:
    """Merge two datums into a new one (neither input is changed)."""
    result = dict(left)
    for entry_id, entry in right.items():
        mine = result.get(entry_id)
        if mine is None or entry.newer_than(mine):
            result[entry_id] = entry
    return result


def entry_hash(entry_id: str, version: Version | Entry) -> int:
    """A 64-bit hash of one entry's identity and version (given as the version or the entry); datum digests
    XOR these together."""
    text = f"{entry_id}\x00{version.ms}\x00{version.counter}\x00{version.node}"
    return int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def datum_digest(entries: Iterable[tuple[str, Entry]]) -> int:
    """Order-independent digest of a datum: XOR of its entry hashes (0 for an empty datum).

    :func:`entry_hash` inlined (a third cheaper per entry: loading a snapshot hashes every entry it installs)."""
    digest = 0
    from_bytes = int.from_bytes
    for entry_id, entry in entries:
        text = f"{entry_id}\x00{entry.ms}\x00{entry.counter}\x00{entry.node}"
        digest ^= from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
    return digest
