"""A snapshot chunk or a replication batch of the largest entries the API accepts fits one peer-link frame,
whatever ``--metadata-max-bytes`` says (``cluster.node.settings.fit_peer_batches``): a message that did not fit
could never be sent (a restarting node would wait for the chunk until its snapshot timed out)."""

from __future__ import annotations

import json

import msgpack
import pytest

from cluster.node.peerlink import PEER_MAX_FRAME_BYTES
from cluster.node.settings import ConfigError, parse_settings
from distro.codec import encode_message
from distro.datum import Entry
from distro.messages import SnapshotChunk, SyncBatch
from distro.model import MAX_NAME_LENGTH, Instance, ServiceKey
from distro.versions import Version


def widest_metadata(max_bytes: int, tag: int) -> dict[str, str]:
    """64 keys whose JSON text is as close to ``max_bytes`` as the limit allows, unique per ``tag``."""
    keys = 64
    value_len = max(1, (max_bytes - 2 - keys * 8) // keys - 4)
    metadata = {f"k{i:02d}": f"{tag:08d}".ljust(value_len, "v") for i in range(keys)}
    assert len(json.dumps(metadata, separators=(",", ":")).encode()) <= max_bytes
    return metadata


def widest_instance(n: int, max_bytes: int) -> Instance:
    cluster = "c" * MAX_NAME_LENGTH
    return Instance(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 65535, cluster, 1e9, True, True,
                    widest_metadata(max_bytes, n), connection="conn-" + "x" * 60, assigned_id="9" * 20)


def frame_bytes(message: SnapshotChunk | SyncBatch) -> int:
    return len(msgpack.packb([encode_message(message)], use_bin_type=True)) + 4


def widest_key(n: int) -> ServiceKey:
    return ServiceKey("ns-" + "n" * 60, "g" * 100, f"{n:06d}" + "s" * (MAX_NAME_LENGTH - 110))


VERSION = Version(2**41, 2**20, "n" * 64)


@pytest.mark.parametrize("metadata_max_bytes", [4096, 20_000, 262_144])
def test_a_chunk_of_the_widest_entries_fits_one_frame(metadata_max_bytes: int) -> None:
    count = parse_settings(["--metadata-max-bytes", str(metadata_max_bytes)]).core.snapshot_chunk_entries
    blocks = []
    for n in range(count):  # each entry in a service of its own: a key per block, the worst case
        inst = widest_instance(n, metadata_max_bytes)
        blocks.append((widest_key(n), {inst.entry_id: Entry(VERSION, inst)}, 2**64 - 1))  # the widest digest
    size = frame_bytes(SnapshotChunk(True, 2**40, 2**30, 2**30 + 2, (), tuple(blocks)))
    assert size <= PEER_MAX_FRAME_BYTES, (count, size)


@pytest.mark.parametrize("metadata_max_bytes", [20_000, 262_144])
def test_a_sync_batch_of_the_widest_entries_fits_one_frame(metadata_max_bytes: int) -> None:
    count = parse_settings(["--metadata-max-bytes", str(metadata_max_bytes)]).core.sync_batch_entries
    items = []
    for n in range(count):
        inst = widest_instance(n, metadata_max_bytes)
        items.append((widest_key(n), inst.entry_id, Entry(VERSION, inst)))
    size = frame_bytes(SyncBatch(tuple(items)))
    assert size <= PEER_MAX_FRAME_BYTES, (count, size)


def test_the_defaults_are_kept() -> None:
    core = parse_settings([]).core
    assert (core.snapshot_chunk_entries, core.sync_batch_entries) == (2_500, 1_000)


def test_larger_metadata_makes_batches_smaller() -> None:
    small = parse_settings(["--metadata-max-bytes", "20000"]).core
    smaller = parse_settings(["--metadata-max-bytes", "262144"]).core
    assert 2_500 > small.snapshot_chunk_entries > smaller.snapshot_chunk_entries >= 1
    assert 1_000 > small.sync_batch_entries > smaller.sync_batch_entries >= 1
    assert parse_settings(["--metadata-max-bytes", "20000", "--sync-batch-entries", "5"]).core.sync_batch_entries == 5


def test_metadata_larger_than_a_frame_is_refused() -> None:
    with pytest.raises(ConfigError, match="--metadata-max-bytes 17000000 is too large"):
        parse_settings(["--metadata-max-bytes", "17000000"])
    with pytest.raises(ConfigError, match="--metadata-max-bytes must be positive"):
        parse_settings(["--metadata-max-bytes", "0"])
