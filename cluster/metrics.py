"""Prometheus text exposition of a node's counters (no client library needed for a handful of series)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cluster.http import HttpStats
    from cluster.node.peerlink import PeerLinkStats
    from cluster.node.pump import NodeRuntime

_COUNTERS = {
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
    "snapshot_chunks_sent": "Snapshot chunks handed to the peer link for starting peers (sends that failed included).",
    "notifications": "Read views rebuilt by the notifier.",
    "instances_marked_unhealthy": "Instances marked unhealthy by this node's heartbeat checks.",
    "instances_expired": "Instances deleted by this node's heartbeat checks.",
    "stale_entries_refused": "Stale entries older than a collected tombstone, answered with a new tombstone.",
    "dirty_overflows": "Times a peer's replication backlog overflowed and was left to anti-entropy.",
    "notifier_overflows": "Times the notifier queue overflowed and forced a full rebuild.",
}
_GAUGES = {
    "ready": "1 once the snapshot is loaded.",
    "peers_up": "Peers currently up.",
    "peers_known": "Peers known.",
    "keys": "Service keys held.",
    "owned_keys": "Service keys this node owns.",
    "live_instances": "Live instances held.",
    "tombstones": "Tombstones held.",
    "pending_forwards": "Forwarded writes waiting for the owner (queue depth).",
    "notifier_depth": "Keys waiting in the notifier queue.",
    "dirty_entries": "Entries waiting to be replicated, all peers together (replication lag).",
}


def _series(name: str, kind: str, help_text: str, value: float, labels: str = "") -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n{name}{labels} {value}\n"


def render_metrics(runtime: NodeRuntime) -> str:
    """The node's counters in Prometheus text format."""
    stats = asdict(runtime.node.statistics())
    parts = []
    for field_name, help_text in _COUNTERS.items():
        parts.append(_series(f"distro_{field_name}_total", "counter", help_text, stats[field_name]))
    for field_name, help_text in _GAUGES.items():
        value = stats[field_name]
        parts.append(_series(f"distro_{field_name}", "gauge", help_text, int(value)))
    return "".join(parts)


def render_http_metrics(stats: HttpStats) -> str:
    """HTTP server counters."""
    parts = [
        _series("distro_http_connections_open", "gauge", "Open client connections.", stats.connections_open),
        _series("distro_http_connections_total", "counter", "Client connections served.", stats.connections_total),
        _series("distro_http_rejected_connections_total", "counter", "Connections refused over the limit.",
                stats.rejected_connections_total),
        "# HELP distro_http_responses_total HTTP responses by status.\n# TYPE distro_http_responses_total counter\n",
    ]
    for status, count in sorted(stats.responses_by_status.items()):
        parts.append(f'distro_http_responses_total{{status="{status}"}} {count}\n')
    parts.append(_series("distro_http_requests_total", "counter", "HTTP requests handled.", stats.requests_total))
    return "".join(parts)


def render_peer_link_metrics(stats: PeerLinkStats) -> str:
    """Peer link counters: handshake failures and bad frames are what an operator alerts on."""
    parts = [
        _series("distro_peer_frames_sent_total", "counter", "Peer frames sent.", stats.frames_sent),
        _series("distro_peer_frames_received_total", "counter", "Peer frames received.", stats.frames_received),
        _series("distro_peer_bytes_sent_total", "counter", "Peer frame bytes sent.", stats.bytes_sent),
        _series("distro_peer_bytes_received_total", "counter", "Peer frame bytes received.", stats.bytes_received),
        _series("distro_peer_handshake_failures_total", "counter",
                "Peer handshakes refused or failed (bad secret, garbage, timeout).", stats.handshake_failures),
        _series("distro_peer_bad_frames_total", "counter",
                "Authenticated peer connections closed for a malformed or oversized frame.", stats.bad_frames),
        _series("distro_peer_send_failures_total", "counter", "Messages that could not be delivered to a peer.",
                stats.send_failures),
        _series("distro_peer_unsendable_total", "counter",
                "Messages this node could not encode or that exceeded the frame limit (a bug: dropped).",
                stats.unsendable),
        _series("distro_peer_links_outbound", "gauge", "Outbound peer links up.", stats.outbound_links),
        _series("distro_peer_links_inbound", "gauge", "Inbound peer links up.", stats.inbound_links),
        "# HELP distro_peer_queue_depth Messages queued for a peer.\n# TYPE distro_peer_queue_depth gauge\n",
    ]
    for node_id, depth in sorted(stats.queue_depths.items()):
        parts.append(f'distro_peer_queue_depth{{peer="{node_id}"}} {depth}\n')
    return "".join(parts)
