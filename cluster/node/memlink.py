"""An in-memory peer transport: runtimes in one trio process exchange messages through bounded channels.

For runtime tests under trio's ``autojump_clock``. It keeps the peer link's contract: sends are queued
and delivered in order by a task; a send to a missing or cut-off node is reported as failed.

Bare runtimes join with :meth:`MemoryNetwork.attach`; whole nodes take the network as their peer transport,
``NodeServer(settings, transport=network.transport)``, and join it while they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from cluster.node.peerlink import LinkState
from cluster.node.pump import NodeRuntime
from distro.messages import Message

if TYPE_CHECKING:
    from cluster.node.settings import NodeSettings

__all__ = ["MemoryEndpoint", "MemoryNetwork"]


class MemoryNetwork:
    """Connects NodeRuntimes by node id. ``cut(a, b)`` drops traffic both ways and reports failures."""

    def __init__(self, queue_limit: int = 10_000) -> None:
        self.runtimes: dict[str, NodeRuntime] = {}
        self.cut_links: set[frozenset[str]] = set()
        self._send, self._receive = trio.open_memory_channel[tuple[str, str, Message]](queue_limit)

    def transport(self, settings: NodeSettings, runtime: NodeRuntime) -> MemoryEndpoint:
        """A ``TransportFactory`` for :class:`~cluster.node.wiring.NodeServer`: the node joins while it runs."""
        return MemoryEndpoint(self, runtime)

    def attach(self, runtime: NodeRuntime) -> None:
        """Join a runtime to the network (its transport becomes an endpoint) and greet the others both ways."""
        runtime.transport = MemoryEndpoint(self, runtime)
        self._join(runtime)

    def _join(self, runtime: NodeRuntime) -> None:
        node_id = runtime.node.node_id
        self.runtimes[node_id] = runtime
        for other_id, other in self.runtimes.items():
            if other_id != node_id and frozenset((node_id, other_id)) not in self.cut_links:
                runtime.on_connected(other_id, other.node.address)
                other.on_connected(node_id, runtime.node.address)

    def detach(self, node_id: str) -> None:
        """A node leaves (crashes): messages to it fail from now on."""
        self.runtimes.pop(node_id, None)

    def cut(self, a: str, b: str) -> None:
        """Partition two nodes."""
        self.cut_links.add(frozenset((a, b)))

    def heal(self) -> None:
        """Remove partitions and reconnect everyone."""
        self.cut_links.clear()
        for node_id, runtime in self.runtimes.items():
            for other_id, other in self.runtimes.items():
                if other_id != node_id:
                    runtime.on_connected(other_id, other.node.address)

    def _post(self, source: str, target: str, message: Message) -> None:
        sender = self.runtimes.get(source)
        if target not in self.runtimes or frozenset((source, target)) in self.cut_links:
            if sender is not None:
                sender.on_send_failed(target, message)
            return
        try:
            self._send.send_nowait((source, target, message))
        except trio.WouldBlock:
            if sender is not None:
                sender.on_send_failed(target, message)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver queued messages until cancelled."""
        task_status.started()
        async for source, target, message in self._receive:
            runtime = self.runtimes.get(target)
            if runtime is not None and frozenset((source, target)) not in self.cut_links:
                runtime.on_message(source, message)


class MemoryEndpoint:
    """One runtime's side of a :class:`MemoryNetwork` (a peer transport)."""

    def __init__(self, network: MemoryNetwork, runtime: NodeRuntime) -> None:
        self.network = network
        self.runtime = runtime
        self.node_id = runtime.node.node_id

    def send(self, node_id: str, message: Message) -> None:
        """Queue a message for another runtime of the network."""
        self.network._post(self.node_id, node_id, message)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Join the network until cancelled, then leave it (as a crash would); ``started(0)``: no port."""
        self.network._join(self.runtime)
        try:
            task_status.started(0)
            await trio.sleep_forever()
        finally:
            self.network.detach(self.node_id)

    def render_metrics(self) -> str:
        """No series of its own."""
        return ""

    def link_states(self) -> dict[str, LinkState]:
        """Every other joined node, linked both ways unless cut."""
        cut = self.network.cut_links
        return {
            node_id: LinkState(linked, linked, 0)
            for node_id in sorted(self.network.runtimes)
            if node_id != self.node_id
            for linked in [frozenset((self.node_id, node_id)) not in cut]
        }
