"""One gRPC client of the workload, behaving as today's Nacos SDKs (2.x/3.x) do.

It knows all three nodes. It connects to one (``ServerCheckRequest``, then ``ConnectionSetupRequest`` on the
bi-stream, cluster/grpc/client.py), registers one instance in each of its services (``InstanceRequest``),
and sends a ``HealthCheckRequest`` every keep-alive interval. When the connection breaks or a health check
goes unanswered, it moves to the next node of its list and registers its instances again (the SDKs' redo).
Pushes and detection probes are answered by the client's pump. A ``ConnectResetRequest`` (a node stopping
gracefully asks its clients to move) is followed as the Java client and nacos-sdk-go do: to the recommended
node (``serverIp``, a member's advertised host ``nodeN``), else the next one; fragile clients ignore it, as
nacos-sdk-python does.

How it can end (what the gone invariant judges): ``closed`` (a clean close, as an SDK's shutdown),
``frozen`` (it stops reading and writing but keeps its socket open: the node must detect it), or, for a
*fragile* client, ``abandoned`` (its connection broke and it does not reconnect, as a client that died with
its node).
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import trio

from chaoslib.state import GrpcBounds, Recorder
from cluster.grpc.client import GrpcClient, GrpcClientError

ENDED = ("closed", "frozen", "abandoned")
_FAILURES = (GrpcClientError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError,
             ValueError)


@dataclass(frozen=True)
class GrpcInst:
    """One instance a gRPC client registers."""

    service: str
    ip: str
    port: int

    @property
    def key(self) -> str:
        return f"{self.ip}:{self.port}"


class GrpcActor:
    """One simulated SDK client: its instances, where it is connected, and what happened to it."""

    def __init__(self, index: int, instances: list[GrpcInst], nodes: dict[str, int], first_node: str,
                 fragile: bool, rec: Recorder, bounds: GrpcBounds) -> None:
        self.index = index
        self.instances = instances
        self.nodes = nodes  # node name -> published gRPC port on 127.0.0.1
        self.order = list(nodes)
        self.next_node = first_node
        self.fragile = fragile
        self.rec = rec
        self.bounds = bounds
        self.state = "new"  # new | live | closed | frozen | abandoned
        self.node: str | None = None  # the node holding its registered connection
        self.connection_id = ""
        self.live_since: float | None = None  # instances registered (reset after a long outage)
        self.registered_at: float | None = None  # the last (re)registration acknowledged
        self.disconnected_since: float | None = None
        self.ended_at: float | None = None
        self.last_listed_after_end: float | None = None
        self.reconnect_s: list[float] = []
        self.history: deque[tuple[float, str]] = deque(maxlen=30)
        self._want: tuple[str, str] | None = None
        self._frozen: GrpcClient | None = None
        self.on_reconnect: Callable[[GrpcActor, float], None] | None = None

    @property
    def name(self) -> str:
        return f"grpc-client-{self.index}{'-fragile' if self.fragile else ''}"

    @property
    def connected(self) -> bool:
        return self.state == "live" and self.disconnected_since is None

    def ask(self, what: str, node: str = "") -> None:
        """Ask the client to ``close``, ``freeze`` or ``move`` (to ``node``) at its next keep-alive tick."""
        self._want = (what, node)

    def event(self, what: str) -> None:
        self.history.append((self.rec.now(), what))

    # -- the client's life -------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, register, hold; reconnect elsewhere on loss; until closed, frozen or abandoned."""
        while self.state not in ENDED:
            node = self.next_node
            outcome = await self._session(node)
            if outcome in ENDED:
                return
            if outcome == "failed":  # could not connect or register there: try the next node soon
                self.next_node = self._after(node)
                await trio.sleep(0.2)
                continue
            if outcome.startswith("move:"):
                self.next_node = outcome[5:]
                continue
            # lost: the connection broke or a health check went unanswered
            self.rec.count("grpc_connections_lost")
            if self.fragile:
                self._end("abandoned", f"lost its connection to {node}; does not reconnect")
                return
            self.next_node = self._after(node)

    def _after(self, node: str) -> str:
        return self.order[(self.order.index(node) + 1) % len(self.order)]

    async def _session(self, node: str) -> str:
        """One connection: ``failed``, ``lost``, ``move:<node>`` or how the client ended."""
        b = self.bounds
        client: GrpcClient | None = None
        outcome = "failed"
        try:
            with trio.move_on_after(2 * b.call_timeout_s + 1.0):
                client = await GrpcClient.connect(self.nodes[node], max_pushes_kept=8)
        except _FAILURES as exc:
            self.event(f"connect to {node}: {type(exc).__name__}: {exc}")
        if client is None:
            self.event(f"connect to {node}: failed")
            self.rec.count("grpc_connect_errors")
            return "failed"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump, client)
                outcome = await self._connected(client, node)
                if outcome == "frozen":
                    self._frozen = client  # its socket stays open, nobody reads it: closed at the very end
                    client = None
                nursery.cancel_scope.cancel()
        finally:
            if client is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await client.aclose()
        if self.node == node and outcome not in ENDED:
            self.node = None
            if self.disconnected_since is None and self.state == "live":
                self.disconnected_since = self.rec.now()
        return outcome

    async def _connected(self, client: GrpcClient, node: str) -> str:
        """Set the connection up and register the instances on it, then hold it."""
        b = self.bounds
        try:
            self.connection_id = await client.setup("chaos", timeout_s=2 * b.call_timeout_s)
            self.rec.count("grpc_connects")
            for inst in self.instances:
                body = {"namespace": "public", "groupName": "DEFAULT_GROUP", "serviceName": inst.service,
                        "type": "registerInstance",
                        "instance": {"ip": inst.ip, "port": inst.port, "weight": 1.0, "healthy": True,
                                     "enabled": True, "ephemeral": True, "clusterName": "DEFAULT",
                                     "metadata": {"chaos": self.name}}}
                answer = await client.call("InstanceRequest", body, timeout_s=b.call_timeout_s)
                if not answer.get("success"):
                    self.event(f"register {inst.key} via {node}: {answer.get('errorCode')} {answer.get('message')}")
                    self.rec.count("grpc_register_errors")
                    return "failed"
        except _FAILURES as exc:
            self.event(f"set up / register via {node}: {type(exc).__name__}: {exc}")
            self.rec.count("grpc_connect_errors")
            return "failed"
        self._registered(node)
        return await self._hold(client, node)

    def _registered(self, node: str) -> None:
        t = self.rec.now()
        if self.disconnected_since is not None:
            gap = t - self.disconnected_since
            self.reconnect_s.append(gap)
            if self.on_reconnect is not None:
                self.on_reconnect(self, gap)
            if gap > 0.8 * self.bounds.components_ms["instance_expire_ms"] / 1000:
                self.live_since = t  # its instances may rightly have expired meanwhile: judged as new
            self.rec.count("grpc_reregistered")
        if self.live_since is None:
            self.live_since = t
        self.state = "live"
        self.node = node
        self.registered_at = t
        self.disconnected_since = None
        self.rec.count("grpc_registered")
        self.event(f"registered {len(self.instances)} instance(s) via {node} ({self.connection_id})")

    async def _hold(self, client: GrpcClient, node: str) -> str:
        """Keep-alive until the connection is lost or the client is asked to end or move."""
        b = self.bounds
        while True:
            with trio.move_on_after(b.keepalive_s):
                while self._want is None and not client.closed.is_set() and not client.pushes:
                    await trio.sleep(0.1)
            if self._want is not None:
                what, target = self._want
                self._want = None
                if what == "close":
                    self._end("closed", f"closed its connection to {node} cleanly")
                    return "closed"
                if what == "freeze":
                    self._end("frozen", f"stopped reading and writing on its connection to {node}")
                    return "frozen"
                if what == "move" and target != node:
                    self.rec.count("grpc_moved")
                    self.event(f"moves from {node} to {target}")
                    return f"move:{target}"
            reset = self._reset_target(client, node)
            if reset is not None:
                self.rec.count("grpc_resets_followed")
                self.event(f"{node} asked it to move (ConnectResetRequest): moves to {reset}")
                return f"move:{reset}"
            if client.closed.is_set():
                self.event(f"{node}: connection closed")
                return "lost"
            try:
                answer = await client.call("HealthCheckRequest", {"module": "internal"}, timeout_s=b.call_timeout_s)
            except _FAILURES as exc:
                self.event(f"health check via {node}: {type(exc).__name__} {exc}")
                self.rec.count("grpc_health_failures")
                return "lost"
            if not answer.get("success"):
                self.event(f"health check via {node}: {answer.get('errorCode')} {answer.get('message')}")
                self.rec.count("grpc_health_failures")
                return "lost"

    def _reset_target(self, client: GrpcClient, node: str) -> str | None:
        """Where a ConnectResetRequest received on ``client`` sends this client (None: none received, or
        the client is fragile and ignores it)."""
        resets = [p for p in client.pushes if p.type == "ConnectResetRequest"]
        client.pushes.clear()
        if not resets or self.fragile:
            return None
        try:
            server_ip = json.loads(resets[-1].body).get("serverIp") or ""
        except ValueError:
            server_ip = ""
        return server_ip if server_ip in self.nodes and server_ip != node else self._after(node)

    def _end(self, how: str, what: str) -> None:
        self.state = how
        self.ended_at = self.rec.now()
        self.rec.count(f"grpc_{how}")
        self.event(what)

    async def aclose(self) -> None:
        """Close a frozen client's socket (the end of the run)."""
        if self._frozen is not None:
            with contextlib.suppress(*_FAILURES):
                await self._frozen.aclose()
            self._frozen = None


async def _pump(client: GrpcClient) -> None:
    """The client's reader; whatever ends it (a protocol error included) just closes the connection."""
    with contextlib.suppress(Exception):
        await client.pump()
    client.closed.set()
