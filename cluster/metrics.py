"""The one Prometheus text writer, and the node's own series (no client library needed for a handful).

Every module that exports metrics writes them with :func:`family` (a metric with labelled samples) or
:func:`counter` / :func:`gauge` (a metric with one sample); this module knows the exposition format
(``# HELP``, ``# TYPE``, label escaping, number formatting) and nobody else does. The node's core counters,
the HTTP server's and the peer links' are rendered here as well; the API's parts (readiness, auth, push,
watch) render their own through the same functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from cluster.http.server import HttpStats
    from cluster.node.peerlink import PeerLinkStats
    from distro.node import NodeStatistics

__all__ = [
    "Kind",
    "counter",
    "family",
    "gauge",
    "render_http_metrics",
    "render_node_metrics",
    "render_peer_link_metrics",
]

Kind = Literal["counter", "gauge"]
Sample = tuple[Mapping[str, str], float]


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_label_value(value)}"' for name, value in labels.items()) + "}"


def family(name: str, kind: Kind, help_text: str, samples: Iterable[Sample]) -> str:
    """One metric: its ``# HELP`` and ``# TYPE`` lines, then one line per ``(labels, value)`` sample."""
    lines = [f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"]
    lines.extend(f"{name}{_labels(labels)} {_number(value)}\n" for labels, value in samples)
    return "".join(lines)


def counter(name: str, help_text: str, value: float) -> str:
    """A counter with a single, unlabelled sample."""
    return family(name, "counter", help_text, [({}, value)])


def gauge(name: str, help_text: str, value: float) -> str:
    """A gauge with a single, unlabelled sample."""
    return family(name, "gauge", help_text, [({}, value)])


_NODE_COUNTERS = {
    "requests_applied": "Client writes applied on this node (local or forwarded here).",
    "forwards_sent": "Client writes forwarded to their owner.",
    "forwards_received": "Forwarded writes received from peers.",
    "forward_fallbacks": "Forwards that failed or timed out and were applied locally instead.",
    "sync_batches_sent": "Replication batches sent.",
    "sync_entries_sent": "Entries sent in replication batches.",
    "sync_batches_received": "Replication batches received.",
    "entries_applied": "Entries applied to the store (local and replicated).",
    "digests_sent": "Anti-entropy digest messages sent.",
    "repairs_sent": "Anti-entropy repairs answered.",
    "digests_corrected": "Key digests anti-entropy found not to be their entries' and computed again.",
    "snapshot_chunks_sent": "Snapshot chunks handed to the peer link for starting peers (sends that failed included).",
    "notifications": "Read views rebuilt by the notifier.",
    "instances_marked_unhealthy": "Instances marked unhealthy by this node's heartbeat checks.",
    "instances_expired": "Instances deleted by this node's heartbeat checks.",
    "stale_entries_refused": "Stale entries older than a collected tombstone, answered with a new tombstone.",
    "future_entries_refused": "Replicated entries refused for a version beyond the wall clock plus --max-clock-skew-ms.",
    "dirty_overflows": "Times a peer's replication backlog overflowed and was left to anti-entropy.",
    "notifier_overflows": "Times the notifier queue overflowed and forced a full rebuild.",
    "renewals_sent": "Renew messages sent to owners for the instances of this node's gRPC connections.",
    "renewals_received": "Renew messages received (gRPC connections' renewals and beat receipts).",
    "renewed_missing": "Renewed instances an owner lacked (registered again while still bound).",
    "renewed_taken": "Renewed instances that another connection or client had taken (forgotten).",
    "instances_orphaned": "gRPC-bound instances this node marked orphans (their holder seen down): they expire.",
    "beats_answered_here": "Beats for instances owned elsewhere answered from this node's replica.",
    "beat_receipts_sent": "Beat receipts (one per instance and receipt interval) sent to the owners.",
    "beat_receipts_stale": "Beat receipts for instances this owner had deleted (answered with the tombstone).",
    "entries_persisted": "Cluster-data entries (namespaces, settings) handed to the data folder.",
    "empty_services_removed": "Services a registration created, removed by this node's empty-service cleaner.",
    "deletion_records_dropped": "Deletion records (floors, and their tombstone rows on disk) forgotten, oldest "
                                "first, over --max-deletion-records.",
}
_NODE_GAUGES = {
    "ready": "1 once the snapshot is loaded.",
    "peers_up": "Peers currently up.",
    "peers_known": "Peers known.",
    "keys": "Service keys held.",
    "owned_keys": "Service keys this node owns.",
    "live_instances": "Live instances held.",
    "tombstones": "Tombstones held.",
    "entry_floors": "Deleted cluster-data entries remembered after their tombstones were collected.",
    "key_floors": "Keys whose deleted instances are remembered after their tombstones were collected.",
    "pending_forwards": "Forwarded writes waiting for the owner (queue depth).",
    "notifier_depth": "Keys waiting in the notifier queue.",
    "dirty_entries": "Entries waiting to be replicated, all peers together (replication lag).",
    "ownership_cache_bytes": "Bytes of the key-to-owner cache (bounded; docs/security.md).",
    "connections": "gRPC connections set up on this node (in its connection table).",
    "connection_instances": "Instances bound to this node's gRPC connections.",
    "beat_receipt_bytes": "Bytes of beat receipts waiting to go to their owners (bounded by --max-beat-receipt-bytes).",
    "persist_backlog": "Cluster-data entries handed to the data folder and not reported written yet.",
    "answers_awaiting_disk": "Answers to cluster-data requests held until the data folder has their writes.",
}


def render_node_metrics(statistics: NodeStatistics) -> str:
    """The core's counters and gauges (``DistroNode.statistics()``)."""
    stats = asdict(statistics)
    parts = [counter(f"distro_{name}_total", help_text, stats[name]) for name, help_text in _NODE_COUNTERS.items()]
    parts += [gauge(f"distro_{name}", help_text, int(stats[name])) for name, help_text in _NODE_GAUGES.items()]
    return "".join(parts)


def render_http_metrics(stats: HttpStats) -> str:
    """HTTP server counters."""
    by_status = sorted(stats.responses_by_status.items())
    return "".join([
        gauge("distro_http_connections_open", "Open client connections.", stats.connections_open),
        counter("distro_http_connections_total", "Client connections served.", stats.connections_total),
        counter("distro_http_rejected_connections_total", "Connections refused over the limit.",
                stats.rejected_connections_total),
        counter("distro_http_rejected_per_ip_total", "Connections refused over the limit per client address.",
                stats.rejected_per_ip_total),
        counter("distro_http_idle_evicted_total", "Idle keep-alive connections closed to make room for new ones.",
                stats.idle_evicted_total),
        counter("distro_http_shed_at_fd_limit_total", "Connections answered 503 because file descriptors ran out.",
                stats.shed_at_fd_limit_total),
        family("distro_http_responses_total", "counter", "HTTP responses by status.",
               [({"status": str(status)}, count) for status, count in by_status]),
        counter("distro_http_requests_total", "HTTP requests handled.", stats.requests_total),
        counter("distro_http_inline_requests_total",
                "HTTP requests answered in the keep-alive lane (light beats answered at once).",
                stats.inline_requests_total),
        counter("distro_http_lane_errors_total",
                "Unexpected errors in the keep-alive lane (a bug: logged; the server serves on).",
                stats.lane_errors_total),
    ])


def render_peer_link_metrics(stats: PeerLinkStats) -> str:
    """Peer link counters: handshake failures and bad frames are what an operator alerts on."""
    depths = sorted(stats.queue_depths.items())
    return "".join([
        counter("distro_peer_frames_sent_total", "Peer frames sent.", stats.frames_sent),
        counter("distro_peer_frames_received_total", "Peer frames received.", stats.frames_received),
        counter("distro_peer_messages_sent_total",
                "Peer messages sent (a frame carries everything queued for the peer when it was written).",
                stats.messages_sent),
        counter("distro_peer_messages_received_total", "Peer messages received.", stats.messages_received),
        counter("distro_peer_bytes_sent_total", "Peer frame bytes sent.", stats.bytes_sent),
        counter("distro_peer_bytes_received_total", "Peer frame bytes received.", stats.bytes_received),
        counter("distro_peer_handshake_failures_total",
                "Peer handshakes refused or failed (bad secret, garbage, timeout).", stats.handshake_failures),
        counter("distro_peer_bad_frames_total",
                "Authenticated peer connections closed for a malformed, oversized or forged frame.", stats.bad_frames),
        counter("distro_peer_mac_failures_total",
                "Peer frames whose MAC was wrong (injected, altered, replayed, reordered): connection closed.",
                stats.mac_failures),
        counter("distro_peer_self_dials_total",
                "Times a peer address was found to be this node (rechecked later with backoff).", stats.self_dials),
        counter("distro_peer_self_relays_total",
                "Times this node's own dial came back to it through another address (a relay): not taken as self.",
                stats.self_relays),
        counter("distro_peer_send_failures_total", "Messages that could not be delivered to a peer.",
                stats.send_failures),
        counter("distro_peer_unsendable_total",
                "Messages this node could not encode or that exceeded the frame limit (a bug: dropped).",
                stats.unsendable),
        gauge("distro_peer_links_outbound", "Outbound peer links up.", stats.outbound_links),
        gauge("distro_peer_links_inbound", "Inbound peer links up.", stats.inbound_links),
        family("distro_peer_queue_depth", "gauge", "Messages queued for a peer.",
               [({"peer": node_id}, depth) for node_id, depth in depths]),
        family("distro_peer_queue_bytes", "gauge", "Encoded bytes queued for a peer (bounded per peer).",
               [({"peer": node_id}, size) for node_id, size in sorted(stats.queue_bytes.items())]),
    ])
