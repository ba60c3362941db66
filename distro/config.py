"""Tunable timings and bounds of one node. Defaults follow Nacos where it has one, faster where it lags."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["NEVER", "DistroConfig"]

NEVER = -(2**62)
"""A time before every ``now_ms``: when something has never happened."""


@dataclass(frozen=True, slots=True)
class DistroConfig:
    """All knobs of the core, in milliseconds and counts."""

    # Health (Nacos: 15 s unhealthy, 30 s deleted, checked every 5 s; we check every second).
    heartbeat_timeout_ms: int = 15_000
    instance_expire_ms: int = 30_000
    health_check_interval_ms: int = 1_000
    client_beat_interval_ms: int = 5_000
    # Replication (Nacos: 1 s + 1 s batching, 1000 keys a batch).
    # 2 ms (was 10): under 1,000 writes/s a stream of changes to a peer is rarely quiet for 10 ms, so most
    # writes waited up to 10 ms for their batch, most of the 10 ms visibility budget; at 2 ms a saturated
    # cluster sends about twice the batches (0.15 -> 0.28 per registration measured; an estimated 2-3% of a
    # registration's CPU at saturation: docs/benchmarks.md).
    sync_delay_ms: int = 2
    sync_batch_entries: int = 1_000
    max_dirty_entries_per_peer: int = 200_000
    # Anti-entropy (Nacos: 5 s).
    verify_interval_ms: int = 5_000
    # A digest chunk names at most digest_chunk_keys keys holding about digest_chunk_entries entries: what
    # one step builds, encodes, decodes and compares, and what a repair of the chunk can carry back.
    digest_chunk_keys: int = 500
    digest_chunk_entries: int = 2_000
    # Membership: a peer is up while heard from within peer_timeout_ms and ready.
    ping_interval_ms: int = 500
    peer_timeout_ms: int = 3_000
    # Snapshot load on start.
    snapshot_timeout_ms: int = 3_000
    snapshot_retry_ms: int = 1_000
    snapshot_chunk_entries: int = 2_500
    # A snapshot is served in slices of snapshot_slice_chunks chunks, one slice every
    # snapshot_slice_interval_ms (500k entries/s at most by default): the store is walked a slice at a time, so
    # serving a million entries never blocks the node, and the send queue to the starting node stays well
    # under its bound while that node (slower to load than to send) catches up. The starting node merges a
    # chunk in one step (43-79 ms of CPU at 5,000 entries on this machine, a 1M restart): 2,500 halves that.
    # The sender walks and encodes a slice in one step too (~3.5 us an entry): one chunk every 5 ms keeps
    # that step near 9 ms where two every 10 ms took 17-28 ms, at the same most entries per second.
    snapshot_slice_chunks: int = 1
    snapshot_slice_interval_ms: int = 5
    # A node that gains keys (a peer went down, or it became ready) builds their heartbeat clocks a slice of
    # about this many instances per tick (distro/health.py), not all at once. The walk touches every entry and
    # instance, ~1 us each at a million instances (memory-bound): 20,000 a tick held a survivor 20-30 ms of CPU
    # per tick for the nine ticks after a peer of a 1M registry went down (tick after tick, so a request
    # waiting for two of them waited over 100 ms); 5,000 keeps a tick near 5 ms.
    clock_fill_instances: int = 5_000
    # The health check judges the owned instances a slice of about this many per node tick, from a cursor
    # over the owned keys (distro/health.py), so a pass over a third of a million never holds a node.
    health_scan_instances: int = 20_000
    # A beat for an instance that was explicitly deregistered this recently answers OK without asking the
    # client to register again (a beat already in flight when its instance was removed; Nacos answers 20404
    # and the Java client re-registers what it just removed).
    deregister_grace_ms: int = 5_000
    # Beats answered from the replica (distro/beats.py): a node that does not own a key answers a beat for an
    # instance its replica holds healthy at once, and renews it on the owner with the other receipts of the
    # last beat_receipt_interval_ms in one Renew per owner (0: forward every beat to its owner, as Nacos).
    # The receipts waiting here are bounded in bytes: reaching the bound sends them at once.
    beat_receipt_interval_ms: int = 1_000
    max_beat_receipt_bytes: int = 1_048_576
    # Forwarding writes to the owner.
    forward_timeout_ms: int = 2_000
    max_pending_forwards: int = 10_000
    # Tombstones are kept this long (and at least twice the expiry), then collected.
    tombstone_ttl_ms: int = 300_000
    gc_interval_ms: int = 5_000
    # Versions whose milliseconds are beyond this node's wall clock plus this are refused when merged
    # (counted in future_entries_refused): keep the members' clocks within it of each other (NTP).
    max_clock_skew_ms: int = 60_000
    # Bounds.
    max_notifier_keys: int = 1_000_000
    max_instances_per_service: int = 10_000
    # Service keys held (all namespaces and groups; a removed service counts until its tombstones are
    # collected). Only client writes that would add a key are refused; replicated entries never are.
    max_services: int = 100_000
    # gRPC connections held by this node (distro/connections.py; Nacos's timings): probe a connection idle
    # this long, give it up when the probe is not answered within connection_give_up_after_ms. The holder
    # renews its connections' instances on their owners every heartbeat_timeout_ms / 3.
    connection_probe_after_idle_ms: int = 20_000
    connection_give_up_after_ms: int = 5_000
    connection_check_interval_ms: int = 3_000
    max_instances_per_connection: int = 10_000
    # Most namespaces the namespaces API may create (they are cluster data, kept on every node).
    max_namespaces: int = 1_000
    # Deletions remembered once their tombstones are collected (floors, distro/store.py; ~350 bytes each in
    # memory, a tombstone row on disk for cluster data): past it the oldest are forgotten. A node that missed
    # more newer deletions than this (down or cut off meanwhile) can bring the older ones back: wipe its
    # data folder instead (docs/operations.md). As many as --max-services keys, about 35 MB.
    max_deletion_records: int = 100_000
    # Empty-service cleaner (Nacos: removed after more than 3 empty runs, every 20 s after 60 s): a service
    # a registration created is removed once it has had no instance and no change for the grace.
    empty_service_grace_ms: int = 60_000
    empty_service_clean_interval_ms: int = 20_000
    # Cluster data is written to disk before its answer goes out (a node started with a data folder).
    durable_writes: bool = False
    # Members expected in the cluster, self included (for self-preservation; learned peers raise it).
    cluster_size: int = 1
    # Stop expiring instances while this node sees fewer than half of the cluster (a partitioned minority
    # cannot hear the beats that go to the other side).
    self_preservation: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"{f.name} must not be negative, got {value}")
        if self.instance_expire_ms < self.heartbeat_timeout_ms:
            raise ValueError("instance_expire_ms must be at least heartbeat_timeout_ms")
        for name in ("ping_interval_ms", "verify_interval_ms", "health_check_interval_ms", "gc_interval_ms",
                     "connection_probe_after_idle_ms", "connection_give_up_after_ms",
                     "connection_check_interval_ms", "max_instances_per_connection",
                     "empty_service_clean_interval_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if (self.sync_batch_entries <= 0 or self.digest_chunk_keys <= 0 or self.digest_chunk_entries <= 0
                or self.snapshot_chunk_entries <= 0
                or self.snapshot_slice_chunks <= 0 or self.clock_fill_instances <= 0
                or self.health_scan_instances <= 0):
            raise ValueError("batch and chunk sizes must be positive")
