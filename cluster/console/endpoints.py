"""The read-only endpoints the console needs beyond Nacos's API (docs/console.md lists their shapes).

:class:`cluster.api.routes.NamingApi` lists them in its route table, behind its guards.

* ``GET /nacos/v1/console/server/state``: version and whether auth is on (open: the login page needs it
  before it has a token).
* ``GET /nacos/v1/console/changes``: the change feed's long poll (:mod:`cluster.console.feed`).
* ``GET /nacos/v1/console/node``: this node's own facts (id, version, start time, readiness).
* ``GET /nacos/v1/console/cluster``: every member with its state, link state, services owned, and the
  version and uptime it reports itself (asked of each member that is up, in parallel, over the peer link).
* ``GET /nacos/v1/console/beats``: when each instance of a service last beat. Only the owner knows, so a
  node that does not own the service asks the owner over the peer link (:mod:`cluster.console.peers`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

import trio

from cluster.console.feed import DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, ChangeFeed
from cluster.console.peers import MAX_BEATS, ConsolePeers
from cluster.http import Request, Response
from cluster.node.peerlink import LinkState
from distro.messages import ConsoleReply
from distro.model import ServiceKey, service_key

if TYPE_CHECKING:
    from cluster.api.params import Params
    from cluster.node.pump import NodeRuntime

log = logging.getLogger("distro.console")

CONSOLE = "/nacos/v1/console"
STATE_PATH = f"{CONSOLE}/server/state"
NODE_PATH = f"{CONSOLE}/node"
BEATS_PATH = f"{CONSOLE}/beats"
DISTRIBUTION = "distro-registry"


LinkStates = Callable[[], Mapping[str, LinkState]]
Route = Callable[[Request, "Params"], Awaitable[Response]]


def package_version() -> str:
    """The installed distribution's version (``unknown`` when run from a bare source tree)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


class ConsoleEndpoints:
    """The console's own read endpoints on one node. ``routes()`` lists them for the API's route table."""

    def __init__(self, runtime: NodeRuntime, *, auth_enabled: bool, link_states: LinkStates | None = None) -> None:
        self.runtime = runtime
        self.node = runtime.node
        self.auth_enabled = auth_enabled
        self.link_states = link_states
        self.version = package_version()
        self.started_ms = runtime.now_ms()
        self.feed = ChangeFeed()
        self.peers = ConsolePeers(runtime, self.reply_for)
        self._owned_cache: tuple[tuple[int, tuple[str, ...]], dict[str, int]] | None = None

    def routes(self) -> dict[tuple[str, str], Route]:
        """The console's routes, for :class:`cluster.api.routes.NamingApi`'s table (behind its guards)."""
        return {
            ("GET", STATE_PATH): self.state,
            ("GET", f"{CONSOLE}/changes"): self.changes,
            ("GET", f"{CONSOLE}/cluster"): self.cluster,
            ("GET", NODE_PATH): self.node_info,
            ("GET", BEATS_PATH): self.beats,
        }

    # -- server state and node facts ------------------------------------------------------------------
    def server_state(self) -> dict[str, Any]:
        """Nacos 2.x's ``server/state`` keys the console reads, plus this node's id and address."""
        return {
            "version": self.version,
            "standalone_mode": "cluster",
            "function_mode": "naming",
            "auth_enabled": "true" if self.auth_enabled else "false",
            "login_page_enabled": "true" if self.auth_enabled else "false",
            "nodeId": self.node.node_id,
            "address": self.node.address,
        }

    async def state(self, request: Request, params: Params) -> Response:
        """GET console/server/state (open: auth lets it through without a token)."""
        await trio.lowlevel.checkpoint()
        return Response.json(self.server_state())

    def facts(self) -> dict[str, Any]:
        """What this node says about itself."""
        now_ms = self.runtime.now_ms()
        return {
            "nodeId": self.node.node_id,
            "address": self.node.address,
            "version": self.version,
            "startedMs": self.started_ms,
            "uptimeMs": now_ms - self.started_ms,
            "ready": self.node.ready,
        }

    def reply_for(self, key: ServiceKey | None) -> ConsoleReply:
        """This node's answer to a peer's console query (``query_id`` is set by the caller)."""
        beats = () if key is None else tuple(self.local_beats(key).items())[:MAX_BEATS]
        return ConsoleReply(0, self.version, self.started_ms, self.runtime.now_ms(), beats)

    async def node_info(self, request: Request, params: Params) -> Response:
        """GET console/node."""
        await trio.lowlevel.checkpoint()
        return Response.json(self.facts())

    # -- the change feed ------------------------------------------------------------------------------
    async def changes(self, request: Request, params: Params) -> Response:
        """GET console/changes: the long poll."""
        raw_revision = params.get("revision")
        revision = None if raw_revision in (None, "") else params.integer("revision", 0, high=2**53)
        timeout_ms = params.integer("timeoutMs", DEFAULT_TIMEOUT_MS, high=MAX_TIMEOUT_MS)
        return Response.json(await self.feed.wait(params.get("feed"), revision, timeout_ms))

    # -- the cluster page -----------------------------------------------------------------------------
    def services_owned(self) -> dict[str, int]:
        """How many services each live member owns, as this node computes ownership (cached per change; a change
        to cluster-wide data does not move the feed, but it cannot change a count of services either)."""
        cache_key = (self.feed.revision, self.node.live_members())
        if self._owned_cache is not None and self._owned_cache[0] == cache_key:
            return self._owned_cache[1]
        counts: dict[str, int] = {}
        for view in self.node.views():
            if not view.key.group:  # cluster-wide data (the namespaces), not a service
                continue
            owner = self.node.owner_of(view.key)
            if owner is not None:
                counts[owner] = counts.get(owner, 0) + 1
        self._owned_cache = (cache_key, counts)
        return counts

    async def cluster(self, request: Request, params: Params) -> Response:
        """GET console/cluster."""
        owned = self.services_owned()
        links = {} if self.link_states is None else dict(self.link_states())
        members: list[dict[str, Any]] = []
        for member in self.node.members():
            link = links.get(member.node_id)
            members.append(
                {
                    "address": member.address,
                    "nodeId": member.node_id,
                    "self": member.is_self,
                    "state": "UP" if member.up else ("STARTING" if member.is_self else "DOWN"),
                    "ready": member.ready,
                    "lastHeardMs": member.last_heard_ms if member.last_heard_ms > 0 else None,
                    "link": None if member.is_self or link is None else
                    {"outbound": link.outbound, "inbound": link.inbound, "queued": link.queued},
                    "servicesOwned": owned.get(member.node_id, 0),
                    "reachable": member.is_self,
                    "version": None,
                    "startedMs": None,
                    "uptimeMs": None,
                }
            )

        async def ask(row: dict[str, Any]) -> None:
            reply = await self.peers.ask(row["nodeId"])
            if reply is None:
                row["error"] = "it did not answer over the peer link within a second"
                return
            row.update(reachable=True, version=reply.version, startedMs=reply.started_ms,
                       uptimeMs=reply.now_ms - reply.started_ms)

        async with trio.open_nursery() as nursery:
            for row in members:
                if row["self"]:
                    row.update({name: value for name, value in self.facts().items() if name != "ready"})
                elif row["state"] == "UP":
                    nursery.start_soon(ask, row)
        return Response.json({"self": self.node.address, "members": members})

    # -- last beats -----------------------------------------------------------------------------------
    def local_beats(self, key: ServiceKey) -> dict[str, int]:
        """``{"<cluster>/<ip>:<port>": last beat ms}`` for an owned service (empty when not owned here)."""
        view = self.node.view(key)
        if view is None or not self.node.is_owner(key):
            return {}
        beats: dict[str, int] = {}
        for instance in view.instances:
            last = self.node.last_beat_ms(key, instance.entry_id)
            if last is not None:
                beats[instance.entry_id] = last
        return beats

    async def beats(self, request: Request, params: Params) -> Response:
        """GET console/beats."""
        key = service_key(params.get("namespaceId"), params.get("groupName"), params.required("serviceName"))
        owner = self.node.owner_of(key)
        now_ms = self.runtime.now_ms()
        body: dict[str, Any] = {
            "owner": None if owner is None else self.node.address_of(owner), "nowMs": now_ms, "beats": {},
        }
        if owner is None or owner == self.node.node_id:
            await trio.lowlevel.checkpoint()
            body["beats"] = self.local_beats(key)
            return Response.json(body)
        reply = await self.peers.ask(owner, key)
        if reply is None:
            body["error"] = "the owner did not answer over the peer link within a second"
        else:
            skew = self.runtime.now_ms() - reply.now_ms  # re-based on this node's clock: one clock for the page
            body["beats"] = {entry_id: last_ms + skew for entry_id, last_ms in reply.beats}
        return Response.json(body)


__all__ = ["BEATS_PATH", "CONSOLE", "NODE_PATH", "STATE_PATH", "ConsoleEndpoints", "LinkStates", "package_version"]
