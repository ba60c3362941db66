"""An in-memory peer transport: runtimes in one trio process exchange messages through bounded channels.

For runtime tests under trio's ``autojump_clock``. It keeps the peer link's contract: sends are queued
and delivered in order by a task; a send to a missing or cut-off node is reported as failed.
"""

from __future__ import annotations

import trio

from cluster.node.pump import NodeRuntime
from distro.messages import Message


class MemoryNetwork:
    """Connects NodeRuntimes by node id. ``cut(a, b)`` drops traffic both ways and reports failures."""

    def __init__(self, queue_limit: int = 10_000) -> None:
        self.runtimes: dict[str, NodeRuntime] = {}
        self.cut_links: set[frozenset[str]] = set()
        self._send, self._receive = trio.open_memory_channel[tuple[str, str, Message]](queue_limit)

    def attach(self, runtime: NodeRuntime) -> None:
        """Join a runtime to the network and greet the others both ways."""
        node_id = runtime.node.node_id
        self.runtimes[node_id] = runtime
        runtime.transport = _Endpoint(self, node_id)
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


class _Endpoint:
    def __init__(self, network: MemoryNetwork, node_id: str) -> None:
        self.network = network
        self.node_id = node_id

    def send(self, node_id: str, message: Message) -> None:
        self.network._post(self.node_id, node_id, message)
