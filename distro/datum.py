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

from collections.abc import Iterable, Mapping
from hashlib import blake2b
from typing import NamedTuple

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


class Entry(NamedTuple):
    """A versioned value. ``value is None`` marks a tombstone."""

    version: Version
    value: EntryValue

    @property
    def is_tombstone(self) -> bool:
        """True for a deletion marker."""
        return self.value is None


Datum = dict[str, Entry]


def newer(a: Entry, b: Entry) -> Entry:
    """The entry that wins a merge of two versions of the same entry id."""
    return b if b.version > a.version else a


def merge_datums(left: Mapping[str, Entry], right: Mapping[str, Entry]) -> Datum:
    """Merge two datums into a new one (neither input is changed)."""
    result = dict(left)
    for entry_id, entry in right.items():
        mine = result.get(entry_id)
        if mine is None or entry.version > mine.version:
            result[entry_id] = entry
    return result


def entry_hash(entry_id: str, version: Version) -> int:
    """A 64-bit hash of one entry's identity and version; datum digests XOR these together."""
    text = f"{entry_id}\x00{version.ms}\x00{version.counter}\x00{version.node}"
    return int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def datum_digest(entries: Iterable[tuple[str, Entry]]) -> int:
    """Order-independent digest of a datum: XOR of its entry hashes (0 for an empty datum)."""
    digest = 0
    for entry_id, entry in entries:
        digest ^= entry_hash(entry_id, entry.version)
    return digest
