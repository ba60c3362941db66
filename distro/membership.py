"""Membership: the peers one node knows, which of them are up, and what ``/operator/servers`` shows.

A peer is **up** while it has been heard from within ``peer_timeout_ms`` and its last ``Ping`` said it is
ready. Any message counts as hearing from it; a failed send marks it down at once (when it was last heard
is forgotten). :meth:`Membership.refresh` recomputes who is up and says who came up and who went down;
what follows from that (lifecycle events, dropped dirty sets, a new ownership map, digests for the peers
that came up) is the node's rule, in :mod:`distro.node`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from distro.config import NEVER

__all__ = ["MemberInfo", "Membership", "PeerState"]


@dataclass(slots=True)
class PeerState:
    """What this node knows about one peer."""

    node_id: str
    address: str
    last_heard_ms: int = NEVER
    ready: bool = False
    up: bool = False
    started_ms: int = 0  # when its current life started, on its clock (its last Ping; 0: not known)


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member as ``/operator/servers`` shows it."""

    node_id: str
    address: str
    up: bool
    ready: bool
    last_heard_ms: int
    is_self: bool


class Membership:
    """The peers one node knows (by node id), and the sorted tuple of those that are up."""

    __slots__ = ("_peer_timeout_ms", "node_id", "peers", "up_peers")

    def __init__(self, node_id: str, peer_timeout_ms: int, peers: Iterable[str]) -> None:
        self.node_id = node_id
        self._peer_timeout_ms = peer_timeout_ms
        self.peers: dict[str, PeerState] = {peer: PeerState(peer, peer) for peer in peers if peer != node_id}
        self.up_peers: tuple[str, ...] = ()

    # -- what the node hears ---------------------------------------------------------------------
    def heard_from(self, sender: str, now_ms: int) -> PeerState:
        """Any message from ``sender``: learn it if it is new, and note when it was heard."""
        peer = self.peers.get(sender)
        if peer is None:
            peer = self.peers[sender] = PeerState(sender, sender)
        peer.last_heard_ms = now_ms
        return peer

    def connected(self, node_id: str, address: str) -> None:
        """The runtime opened a link to ``node_id``: learn it, or the ``address`` it is reached at now."""
        peer = self.peers.get(node_id)
        if peer is None:
            self.peers[node_id] = PeerState(node_id, address)
        elif address:
            peer.address = address

    def unreachable(self, node_id: str) -> bool:
        """A send to ``node_id`` failed: it counts as unheard. True when it was up (refresh, then)."""
        peer = self.peers.get(node_id)
        if peer is None:
            return False
        peer.last_heard_ms = NEVER
        return peer.up

    # -- who is up -------------------------------------------------------------------------------
    def any_timed_out(self, now_ms: int) -> bool:
        """True when a peer counted up has not been heard from for longer than ``peer_timeout_ms``."""
        timeout = self._peer_timeout_ms
        return any(p.up and now_ms - p.last_heard_ms > timeout for p in self.peers.values())

    def refresh(self, now_ms: int) -> tuple[list[str], list[str]]:
        """Recompute who is up. Returns the peers that came up and those that went down (in the order
        the peers were learned)."""
        timeout = self._peer_timeout_ms
        came_up: list[str] = []
        went_down: list[str] = []
        for peer in self.peers.values():
            up = peer.ready and now_ms - peer.last_heard_ms <= timeout
            if up != peer.up:
                peer.up = up
                (came_up if up else went_down).append(peer.node_id)
        self.up_peers = tuple(sorted(p.node_id for p in self.peers.values() if p.up))
        return came_up, went_down

    def next_timeout_ms(self, deadline_ms: int) -> int:
        """The earlier of ``deadline_ms`` and the first moment an up peer would count as timed out."""
        timeout = self._peer_timeout_ms
        for peer in self.peers.values():
            if peer.up:
                deadline_ms = min(deadline_ms, peer.last_heard_ms + timeout + 1)
        return deadline_ms

    def has_quorum(self, cluster_size: int) -> bool:
        """True when this node sees at least half of the expected members (itself included)."""
        expected = max(cluster_size, 1 + len(self.peers))
        return 2 * (1 + len(self.up_peers)) >= expected

    # -- what operators see ----------------------------------------------------------------------
    def address_of(self, node_id: str) -> str:
        """A peer's advertised address (its node id when it is not known)."""
        peer = self.peers.get(node_id)
        return node_id if peer is None else peer.address

    def members(self, own: MemberInfo) -> list[MemberInfo]:
        """``own`` (this node), then every known peer in node id order."""
        result = [own]
        for peer in sorted(self.peers.values(), key=lambda p: p.node_id):
            result.append(MemberInfo(peer.node_id, peer.address, peer.up, peer.ready, peer.last_heard_ms, False))
        return result
