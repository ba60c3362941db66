"""The public HTTP API: Nacos v1 naming routes, plus /metrics, /healthz and /readyz. docs/api.md lists them.

Writes are turned into core requests and submitted through the runtime (which forwards them to the
owner); reads are answered from this node's read views. Every bad parameter is a 400 with Nacos's text;
a handler never lets an exception become a 5xx for bad input.

:class:`NamingApi` is built from its parts (the readiness gate, auth, UDP push, watch, the namespaces and
cluster-settings handlers) and lists, in its constructor and its route table (``_route_table``) and nowhere
else, the guards in the order they run, the ``instance/list`` hooks, every route and every source of
``/metrics``. Nothing adds to them from outside.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import trio

from cluster.api.auth import LOGIN_PATHS, Authenticator, OpenLogin
from cluster.api.catalog import CatalogApi
from cluster.api.clientinfo import client_agent
from cluster.api.clusters import CLUSTER_PATH, ClusterApi, cluster_json, service_clusters
from cluster.api.gzipbody import GZIP_HEADERS, accepts_gzip
from cluster.api.keycache import ServiceKeyCache
from cluster.api.memo import BeatAnswers
from cluster.api.namespaces import NAMESPACES_PATH, NamespaceApi
from cluster.api.params import Params, request_params
from cluster.api.probes import LIVENESS_PATH, READINESS_PATH, ConsoleProbes
from cluster.api.push import PushService
from cluster.api.readiness import ReadinessGate
from cluster.api.render import ListQuery, ListRenderer
from cluster.api.subscribers import SubscribersService
from cluster.api.switches import SwitchDomain, Switches
from cluster.api.watch import WATCH_PATH, WatchService
from cluster.console.endpoints import ConsoleEndpoints
from cluster.http import Deferred, Request, Response
from cluster.metrics import counter, render_node_metrics
from cluster.node.pump import NodeRuntime
from distro.catalog import CatalogIndex
from distro.model import (
    DEFAULT_GROUP,
    GROUP_SEPARATOR,
    Instance,
    ServiceKey,
    ServiceMeta,
    ValidationError,
    instance_entry_id,
    make_instance,
    parse_metadata,
    validate_ip,
    validate_port,
    validate_protect_threshold,
    validate_weight,
)
from distro.readiness import NOT_READY_DETAIL_TEXT, NOT_READY_STATUS, NOT_READY_TEXT
from distro.requests import (
    Beat,
    CreateService,
    DeleteService,
    Deregister,
    Register,
    Result,
    UpdateInstance,
    UpdateService,
)

log = logging.getLogger("distro.api")

__all__ = ["NS", "PERSISTENT_REFUSED", "Guard", "ListHook", "NamingApi", "Route"]

NS = "/nacos/v1/ns"
INSTANCE_PATH = f"{NS}/instance"
BEAT_PATH = f"{NS}/instance/beat"
PERSISTENT_REFUSED = (
    "persistent instances are not supported: this registry keeps ephemeral instances only "
    "(they live by heartbeats); register with ephemeral=true"
)
_JAVA_INT_RE = re.compile(r"[+-]?[0-9]{1,10}")


def _is_java_int(text: str) -> bool:
    """What Java's ``Integer.parseInt`` accepts (ASCII digits, an optional sign, within 32 bits)."""
    return _JAVA_INT_RE.fullmatch(text) is not None and -(2**31) <= int(text) < 2**31


Route = Callable[[Request, Params], Awaitable[Response]]
Guard = Callable[[Request, Params], Response | None]
"""Answers a request itself (503 while starting, 403 without a token), or None to let it through."""
ListHook = Callable[[Request, Params, ServiceKey], int]
"""Sees every ``instance/list`` call (UDP push subscriptions); returns the ``cacheMillis`` to announce."""


def _apply_switches(push: PushService, domain: SwitchDomain) -> None:
    """The switches that change something here: push on/off and the two announced cache times."""
    cache_ms = int(domain["defaultPushCacheMillis"])
    ttl_ms = push.config.subscriber_ttl_ms
    if cache_ms != push.config.push_cache_millis:  # a changed switch: one late poll still keeps a subscriber
        ttl_ms = max(ttl_ms, 2 * cache_ms)
    push.config = replace(
        push.config, enabled=bool(domain["pushEnabled"]), push_cache_millis=cache_ms, subscriber_ttl_ms=ttl_ms
    )
    push.default_cache_millis = int(domain["defaultCacheMillis"])


_LEAVE = Response.text(500, "left to the handler")  # NamingApi._guard_once: not an answer, a marker
_OK_RESPONSE = Response.text(200, "ok")  # shared: rendered once (a response is never modified once returned)


def _ok_or_error(result: Result) -> Response:
    if result.status == 200 and result.body == "ok":
        return _OK_RESPONSE
    if isinstance(result.body, str):
        return Response.text(result.status, result.body)
    return Response.json(result.body, result.status)


class NamingApi:
    """Routes requests to handlers through the guards; one per node."""

    def __init__(
        self,
        runtime: NodeRuntime,
        renderer: ListRenderer,
        *,
        readiness: ReadinessGate,
        push: PushService,
        watch: WatchService,
        auth: Authenticator | None = None,
        catalog: CatalogIndex | None = None,
        console: ConsoleEndpoints | None = None,
        extra_metrics: Sequence[Callable[[], str]] = (),
        metadata_max_bytes: int = 4096,
        metadata_max_keys: int = 64,
    ) -> None:
        self.runtime = runtime
        self.node = runtime.node
        self.renderer = renderer
        self.metadata_max_bytes = metadata_max_bytes
        self.metadata_max_keys = metadata_max_keys
        self.keys = ServiceKeyCache()  # validated keys by their raw names (one key object per service)
        self._beat_answers = BeatAnswers()  # the accepted beat's answer, encoded once per beat interval
        if catalog is None:  # the wiring passes the node's; a bare API (tests) keeps its own up to date
            catalog = CatalogIndex(self.node.view, self.node.views())
            runtime.change_listeners.append(catalog.on_change)
        self.catalog = CatalogApi(runtime, catalog)
        # The guards, in order: a starting node says so (503) before it asks for a token (403).
        self.guards: tuple[Guard, ...] = (readiness.guard,) + (() if auth is None else (auth.guard,))
        self._auth_on = auth is not None
        # Every instance/list call registers or refreshes a UDP push subscriber when it asks for one.
        self.list_hooks: tuple[ListHook, ...] = (push.on_list,)
        # service/subscribers: this node's subscribers, and by default every up peer's (over the peer link)
        self.subscribers = SubscribersService(runtime, [push.subscriber_rows, watch.subscriber_rows])
        # operator/switches: cluster data; three entries steer the list answers and the UDP push
        self.switches = Switches(runtime)
        self.switches.listeners.append(partial(_apply_switches, push))
        _apply_switches(push, self.switches.current())  # switches kept on disk or replicated before us
        namespaces = NamespaceApi(runtime)
        clusters = ClusterApi(runtime, metadata_max_keys=metadata_max_keys, metadata_max_bytes=metadata_max_bytes)
        login = OpenLogin().login if auth is None else auth.login
        self.routes = self._route_table(push, watch, ConsoleProbes(self.node), login, console, namespaces, clusters)
        # /metrics: the core's series, then each part's, then the wiring's (HTTP server, peer transport).
        self.metric_sources: tuple[Callable[[], str], ...] = (
            lambda: render_node_metrics(self.node.statistics()),
            readiness.render_metrics,
            renderer.hosts_cache.render_metrics,
            *(() if auth is None else (auth.render_metrics,)),
            push.render_metrics,
            lambda: counter("distro_subscribers_partial_answers_total",
                            "service/subscribers answers that lack a peer which did not answer in time.",
                            self.subscribers.partial_answers),
            watch.render_metrics,
            *extra_metrics,
        )

    def _route_table(
        self,
        push: PushService,
        watch: WatchService,
        probes: ConsoleProbes,
        login: Route,
        console: ConsoleEndpoints | None,
        namespaces: NamespaceApi,
        clusters: ClusterApi,
    ) -> dict[tuple[str, str], Route]:
        """Every route of the API, listed here and nowhere else."""
        catalog_api = self.catalog
        return {
            # the Nacos v1 naming API
            ("POST", f"{NS}/instance"): self.register,
            ("DELETE", f"{NS}/instance"): self.deregister,
            ("PUT", f"{NS}/instance"): self.update,
            ("PATCH", f"{NS}/instance"): self.patch,
            ("GET", f"{NS}/instance"): self.detail,
            ("GET", f"{NS}/instance/list"): self.list_instances,
            ("PUT", f"{NS}/instance/beat"): self.beat,
            ("POST", f"{NS}/instance/beat"): self.beat,
            ("POST", f"{NS}/service"): self.create_service,
            ("PUT", f"{NS}/service"): self.update_service,
            ("DELETE", f"{NS}/service"): self.delete_service,
            ("GET", f"{NS}/service"): self.get_service,
            # the catalog (cluster/api/catalog.py)
            ("GET", f"{NS}/service/list"): catalog_api.service_list,
            ("GET", f"{NS}/service/names"): catalog_api.service_names,
            ("POST", f"{NS}/service/names"): catalog_api.service_names,
            ("GET", f"{NS}/catalog/services"): catalog_api.services,
            ("GET", f"{NS}/catalog/instances"): catalog_api.instances,
            ("POST", f"{NS}/catalog/instances"): catalog_api.instances,
            ("GET", f"{NS}/catalog/service"): catalog_api.service,
            ("GET", f"{NS}/api/allDomNames"): catalog_api.all_dom_names,
            ("POST", f"{NS}/api/allDomNames"): catalog_api.all_dom_names,
            ("GET", f"{NS}/operator/servers"): self.servers,
            ("GET", f"{NS}/operator/metrics"): self.operator_metrics,
            ("GET", f"{NS}/operator/distro/server"): self.distro_server,
            ("GET", f"{NS}/operator/cluster/state"): self.cluster_state,
            # the legacy aliases of ApiController (DEFAULT_GROUP@@<dom>)
            ("GET", f"{NS}/api/srvIPXT"): self.srv_ipxt,
            ("POST", f"{NS}/api/srvIPXT"): self.srv_ipxt,
            ("PUT", f"{NS}/api/clientBeat"): self.client_beat,
            ("POST", f"{NS}/api/clientBeat"): self.client_beat,
            ("PUT", CLUSTER_PATH): clusters.update,
            # the namespaces of Nacos's console API (cluster data, like service and cluster settings)
            ("GET", NAMESPACES_PATH): namespaces.get,
            ("POST", NAMESPACES_PATH): namespaces.create,
            ("PUT", NAMESPACES_PATH): namespaces.update,
            ("DELETE", NAMESPACES_PATH): namespaces.delete,
            # UDP push and HTTP watch (ours, beside Nacos's API)
            ("GET", f"{NS}/operator/push/state"): push.push_state,
            ("GET", f"{NS}/operator/switches"): self.switches.get,
            ("PUT", f"{NS}/operator/switches"): self.switches.put,
            ("GET", f"{NS}/service/subscribers"): self.subscribers.route,
            ("GET", WATCH_PATH): watch.handle,
            # probes and metrics
            ("GET", "/metrics"): self.metrics,
            ("GET", "/healthz"): self.healthz,
            ("GET", "/readyz"): self.readyz,
            # Nacos's console probes (open, like /healthz and /readyz)
            ("GET", LIVENESS_PATH): probes.liveness,
            ("GET", READINESS_PATH): probes.readiness,
            # login: checked when auth is on; with auth off any credentials get a token nothing checks
            **{("POST", path): login for path in LOGIN_PATHS},
            # the web console's read endpoints, GET /nacos/v1/console/{server/state,changes,cluster,node,beats}
            **({} if console is None else console.routes()),
        }

    async def __call__(self, request: Request) -> Response:
        """The HTTP handler."""
        method = request.method.upper()
        if method == "HEAD":
            method = "GET"
        route = self.routes.get((method, request.path.rstrip("/") or "/"))
        try:
            params = Params(request_params(request))
            for guard in self.guards:  # before the 501: no route names are told to a caller without a token
                refusal = guard(request, params)
                if refusal is not None:
                    return refusal
            if route is None:
                return Response.text(501, f"no such api:{request.method}:{request.path}")
            return await route(request, params)
        except ValidationError as exc:
            return Response.text(exc.status, exc.message)

    # ------------------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------------------
    def answer_now(self, request: Request) -> Response | Deferred | None:
        """The HTTP server's fast handler (cluster/http/lane.py):

        * a light beat (``PUT``/``POST`` ``/instance/beat`` without a ``beat`` parameter or a body) that this node
          answers at once (it owns the service, or its replica answers: :meth:`NodeRuntime.beat_now`),
          answered exactly as :meth:`beat` would;
        * a registration (``POST /instance``, its parameters in the query or a form body), submitted as
          :meth:`register` does but without a task
          (:meth:`NodeRuntime.submit_then`): its answer at once when this node owns the service, else a
          :class:`Deferred` that the owner's answer (or the runtime giving up on it) resolves.

        A guard's refusal is answered here, as :meth:`__call__` would (the guards count what they refuse, and
        the login throttle counts failed credentials: each must run once per request). A request that
        presents ``username``/``password`` to an auth-enabled node is left to :meth:`__call__` before any
        guard runs (the guard counts and throttles those even when they pass). None for anything else, a
        validation error included: :meth:`__call__` answers those, running the guards again (which then
        have no effect beyond their answer)."""
        path = request.path
        if path == INSTANCE_PATH:  # its parameters in the query or in a form body (the Java client's)
            return self._register_now(request) if request.method == "POST" else None
        if path != BEAT_PATH or request.body or request.method not in ("PUT", "POST"):
            return None
        params = Params(request_params(request))
        refusal = self._guard_once(request, params)
        if refusal is not None:
            return None if refusal is _LEAVE else refusal
        if params.get("beat"):
            return None
        try:
            beat = self._light_beat(params)
        except ValidationError:
            return None
        result = self.runtime.beat_now(beat)
        return None if result is None else self._beat_answers.response(result)

    def _register_now(self, request: Request) -> Response | Deferred | None:
        """:meth:`answer_now` for ``POST /instance``."""
        params = Params(request_params(request))
        refusal = self._guard_once(request, params)
        if refusal is not None:
            return None if refusal is _LEAVE else refusal
        try:
            key = self._key(params)
            self._check_ephemeral(params)
            instance = self._instance(params)
        except ValidationError:
            return None
        deferred = Deferred()
        result = self.runtime.submit_then(Register(key, instance), lambda r: deferred.resolve(_ok_or_error(r)))
        return deferred if result is None else _ok_or_error(result)

    def _guard_once(self, request: Request, params: Params) -> Response | None:
        """For :meth:`answer_now`: the guards' refusal (to answer inline), None when they let the request
        through with no effect beyond it, or :data:`_LEAVE` for credentials to check (left to :meth:`__call__`)."""
        if self._auth_on and (params.get("username") is not None or params.get("password") is not None):
            return _LEAVE
        for guard in self.guards:
            refusal = guard(request, params)
            if refusal is not None:
                return refusal
        return None

    def _light_beat(self, params: Params) -> Beat:
        """The beat a request without a ``beat`` body parameter names (raises ``ValidationError``)."""
        key = self._key(params)
        ip_text = validate_ip(params.required("ip"))
        port_value = validate_port(params.integer("port", None, high=65535))
        return Beat(key, params.cluster(), ip_text, port_value, None)

    def _key(self, params: Params) -> ServiceKey:
        return self.keys.key(
            params.get("namespaceId"), params.get("groupName"), params.required("serviceName", "dom")
        )

    def _metadata(self, raw: str | None) -> dict[str, str]:
        if raw is None:
            return {}
        return parse_metadata(raw, max_keys=self.metadata_max_keys, max_bytes=self.metadata_max_bytes)

    def _check_ephemeral(self, params: Params) -> None:
        if not params.boolean("ephemeral", True):
            raise ValidationError(PERSISTENT_REFUSED)

    def _instance(self, params: Params) -> Instance:
        return make_instance(
            params.required("ip"),
            params.integer("port", None, high=65535),
            cluster=params.cluster(),
            weight=params.number("weight", 1.0),
            healthy=params.boolean("healthy", True, "valid"),
            enabled=params.boolean("enabled", True, "enable"),
            metadata=self._metadata(params.get("metadata")),
        )

    # ------------------------------------------------------------------------------------------
    # instance writes
    # ------------------------------------------------------------------------------------------
    async def register(self, request: Request, params: Params) -> Response:
        """POST /instance."""
        key = self._key(params)
        self._check_ephemeral(params)
        instance = self._instance(params)
        return _ok_or_error(await self.runtime.submit(Register(key, instance)))

    async def deregister(self, request: Request, params: Params) -> Response:
        """DELETE /instance."""
        key = self._key(params)
        self._check_ephemeral(params)
        ip = validate_ip(params.required("ip"))
        port = validate_port(params.integer("port", None, high=65535))
        return _ok_or_error(await self.runtime.submit(Deregister(key, params.cluster(), ip, port)))

    def _changes(self, params: Params) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if params.get("weight") not in (None, ""):
            changes["weight"] = validate_weight(params.number("weight", 1.0))
        if params.get("healthy", "valid") not in (None, ""):
            changes["healthy"] = params.boolean("healthy", True, "valid")
        if params.get("enabled", "enable") not in (None, ""):
            changes["enabled"] = params.boolean("enabled", True, "enable")
        if params.get("metadata") is not None:
            changes["metadata"] = self._metadata(params.get("metadata"))
        return changes

    async def update(self, request: Request, params: Params) -> Response:
        """PUT /instance: replaces the instance; fields not given take their defaults (Nacos 1.4.2).

        The Java client 1.0.0 or later must name an instance that exists (same ip and port, any cluster:
        Nacos's ``Instance.equals``); other clients register it.
        """
        key = self._key(params)
        self._check_ephemeral(params)
        instance = self._instance(params)
        if client_agent(request).java_at_least((1, 0, 0)):
            self._require_existing(key, instance)
        return _ok_or_error(await self.runtime.submit(Register(key, instance)))

    def _require_existing(self, key: ServiceKey, instance: Instance) -> None:
        """Nacos's ``updateInstance`` checks, read from this node's view, with its texts."""
        view = self.node.view(key)
        if view is None:
            raise ValidationError(f"service not found, namespace: {key.namespace}, service: {key.grouped_name}")
        if not any(
            inst.ip == instance.ip and (instance.port == 0 or inst.port == instance.port) for inst in view.instances
        ):
            cluster = instance.cluster
            raise ValidationError(
                f"instance not exist: {instance.ip}:{instance.port}:unknown:{cluster}_{instance.weight!r}_"
                f"{'true' if instance.healthy else 'false'}_false_{cluster}"
            )

    async def patch(self, request: Request, params: Params) -> Response:
        """PATCH /instance: like PUT, but the instance must exist."""
        key = self._key(params)
        ip = validate_ip(params.required("ip"))
        port = validate_port(params.integer("port", None, high=65535))
        update = UpdateInstance(key, params.cluster(), ip, port, self._changes(params), True)
        result = await self.runtime.submit(update)
        if result.status == 400 and isinstance(result.body, str) and result.body.startswith("instance not exist"):
            return Response.text(400, "instance not found")
        return _ok_or_error(result)

    async def beat(self, request: Request, params: Params) -> Response:
        """PUT /instance/beat: a light beat (no ``beat``) or a full beat that can re-register."""
        raw = params.get("beat")
        if not raw:
            result = await self.runtime.submit(self._light_beat(params))
            return self._beat_answers.response(result)
        key = self._key(params)
        try:
            beat: Any = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            raise ValidationError(f"Param 'beat' is illegal, it must be a JSON object: {raw[:200]}") from None
        if not isinstance(beat, dict):
            raise ValidationError("Param 'beat' is illegal, it must be a JSON object")
        cluster = beat.get("cluster")
        if not isinstance(cluster, str) or cluster in ("", "None"):
            cluster = params.cluster()
        ip = beat.get("ip") if isinstance(beat.get("ip"), str) and beat.get("ip") else params.required("ip")
        port = beat.get("port", params.get("port"))
        try:
            port_number = int(port)  # type: ignore[arg-type]
            weight = float(beat.get("weight", 1.0))
        except (TypeError, ValueError, OverflowError):
            raise ValidationError("Param 'beat' is illegal: port and weight must be numbers") from None
        metadata = beat.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValidationError("Param 'beat' is illegal: metadata must be an object")
        instance = make_instance(
            str(ip),
            port_number,
            cluster=cluster,
            weight=weight,
            metadata=self._metadata(json.dumps(metadata)) if metadata else {},
        )
        result = await self.runtime.submit(Beat(key, instance.cluster, instance.ip, instance.port, instance))
        return self._beat_answers.response(result)

    # ------------------------------------------------------------------------------------------
    # instance reads
    # ------------------------------------------------------------------------------------------
    async def detail(self, request: Request, params: Params) -> Response:
        """GET /instance."""
        key = self._key(params)
        cluster = params.cluster()
        ip = validate_ip(params.required("ip"))
        port = validate_port(params.integer("port", None, high=65535))
        view = self.node.view(key)
        if view is None:
            return Response.text(404, f"no service {key.grouped_name} found!")
        in_cluster = [inst for inst in view.instances if inst.cluster == cluster]
        if not in_cluster:
            return Response.text(404, f"no ips found for cluster {cluster} in service {key.grouped_name}")
        entry_id = instance_entry_id(cluster, ip, port)
        match = next((inst for inst in in_cluster if inst.entry_id == entry_id), None)
        if match is None:
            return Response.text(404, "no matched ip found!")
        return Response.json(
            {
                "service": key.grouped_name,
                "ip": match.ip,
                "port": match.port,
                "clusterName": match.cluster,
                "weight": match.weight,
                "healthy": match.healthy,
                "enabled": match.enabled,
                "instanceId": match.instance_id(key),
                "metadata": dict(match.metadata),
            }
        )

    async def list_instances(self, request: Request, params: Params) -> Response:
        """GET /instance/list: Nacos's ``doSrvIpxt``."""
        key = self._key(params)
        clusters = params.clusters()
        healthy_only = params.lenient_boolean("healthyOnly", False)
        udp_port = params.get("udpPort")
        if udp_port and not _is_java_int(udp_port):  # Integer.parseInt's NumberFormatException
            raise ValidationError(f'For input string: "{udp_port[:64]}"')
        if params.lenient_boolean("isCheck", False):
            return Response.json({})
        cache_millis = int(self.switches.current()["defaultCacheMillis"])
        for hook in self.list_hooks:
            cache_millis = max(cache_millis, hook(request, params, key))
        query = ListQuery(key, tuple(clusters), healthy_only, client_agent(request).wants_grouped_names)
        await self.renderer.prepare(query)  # a big service's first list: its hosts rendered in slices
        if accepts_gzip(request.headers.get("accept-encoding")):
            gzipped = self.renderer.render_gzip(query, cache_millis=cache_millis)
            if gzipped is not None:
                return Response(200, parts=gzipped, headers=GZIP_HEADERS)
        return Response(200, parts=self.renderer.render_parts(query, cache_millis=cache_millis))

    # ------------------------------------------------------------------------------------------
    # services
    # ------------------------------------------------------------------------------------------
    def _service_meta(self, params: Params, require_threshold: bool) -> ServiceMeta:
        if require_threshold:
            params.required("protectThreshold")
        threshold = validate_protect_threshold(params.number("protectThreshold", 0.0))
        selector_type = "none"
        raw_selector = params.get("selector")
        if raw_selector:
            try:
                selector: Any = json.loads(raw_selector)
            except (ValueError, RecursionError):
                raise ValidationError(f"Param 'selector' is illegal, it must be JSON: {raw_selector[:200]}") from None
            if not isinstance(selector, dict) or selector.get("type") not in ("none", "label"):
                raise ValidationError("Param 'selector' is illegal, its type must be none or label")
            selector_type = str(selector["type"])
        return ServiceMeta(threshold, self._metadata(params.get("metadata")), selector_type)

    async def create_service(self, request: Request, params: Params) -> Response:
        """POST /service."""
        key = self._key(params)
        return _ok_or_error(await self.runtime.submit(CreateService(key, self._service_meta(params, False))))

    async def update_service(self, request: Request, params: Params) -> Response:
        """PUT /service."""
        key = self._key(params)
        return _ok_or_error(await self.runtime.submit(UpdateService(key, self._service_meta(params, True))))

    async def delete_service(self, request: Request, params: Params) -> Response:
        """DELETE /service."""
        key = self._key(params)
        return _ok_or_error(await self.runtime.submit(DeleteService(key)))

    async def get_service(self, request: Request, params: Params) -> Response:
        """GET /service."""
        key = self._key(params)
        view = self.node.view(key)
        if view is None:
            return Response.text(404, f"service {key.grouped_name} is not found!")
        meta = view.meta or ServiceMeta()
        return Response.json(
            {
                "name": key.service,
                "groupName": key.group,
                "namespaceId": key.namespace,
                "protectThreshold": meta.protect_threshold,
                "metadata": dict(meta.metadata),
                "selector": {"type": meta.selector_type},
                "clusters": [cluster_json(key, name, settings) for name, settings in service_clusters(view)],
            }
        )

    # ------------------------------------------------------------------------------------------
    # operator and probes
    # ------------------------------------------------------------------------------------------
    async def servers(self, request: Request, params: Params) -> Response:
        """GET /operator/servers."""
        healthy_only = params.boolean("healthy", False)
        servers = []
        for member in self.node.members():
            if healthy_only and not member.up:
                continue
            host, _, port = member.address.rpartition(":")
            servers.append(
                {
                    "ip": host,
                    "port": int(port) if port.isdigit() else 0,
                    "address": member.address,
                    "nodeId": member.node_id,
                    "state": "UP" if member.up else ("STARTING" if member.is_self else "DOWN"),
                    "self": member.is_self,
                    # never heard of: 0, not the core's "never" sentinel (JSON readers keep 53 bits)
                    "extendInfo": {"lastRefreshTime": max(member.last_heard_ms, 0), "ready": member.ready},
                }
            )
        return Response.json({"servers": servers})

    async def operator_metrics(self, request: Request, params: Params) -> Response:
        """GET /operator/metrics."""
        stats = self.node.statistics()
        # The store's per-key counts: len(view.instances) built every owned view's sorted tuple (230 ms of
        # one CPU per call at 1M instances, scripts/bench --scale 1000000).
        store = self.node.store
        owned_instances = sum(store.live_instance_count(v.key) for v in self.node.views() if self.node.is_owner(v.key))
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        return Response.json(
            {
                "status": "UP" if self.node.ready else "STARTING",
                "serviceCount": sum(1 for _ in self.node.views()),
                "instanceCount": stats.live_instances,
                "responsibleServiceCount": stats.owned_keys,
                "responsibleInstanceCount": owned_instances,
                "raftNotifyTaskCount": 0,
                "cpu": 0.0,
                "load": load,
                "mem": 0.0,
            }
        )

    async def distro_server(self, request: Request, params: Params) -> Response:
        """GET /operator/distro/server?serviceName=: which node owns the service."""
        key = self._key(params)
        owner = self.node.owner_of(key)
        if owner is None:
            return Response.text(NOT_READY_STATUS, NOT_READY_TEXT)
        return Response.json({"responsibleServer": self.node.address_of(owner)})

    async def cluster_state(self, request: Request, params: Params) -> Response:
        """GET /operator/cluster/state: Nacos's (deprecated) Raft peer of this node. There is no Raft here:
        the shape is kept with ``term`` 0 and every node a ``FOLLOWER``; ``nodeId`` and ``ready`` are ours."""
        await trio.lowlevel.checkpoint()
        return Response.json(
            {
                "ip": self.node.address,
                "term": 0,
                "leaderDueMs": 0,
                "heartbeatDueMs": 0,
                "state": "FOLLOWER",
                "nodeId": self.node.node_id,
                "ready": self.node.ready,
            }
        )

    def _legacy(self, params: Params) -> Params:
        """ApiController's rewrite: the service is always ``DEFAULT_GROUP@@<dom>``."""
        dom = params.required("dom")
        return params.overridden(serviceName=f"{DEFAULT_GROUP}{GROUP_SEPARATOR}{dom}", groupName=DEFAULT_GROUP)

    async def srv_ipxt(self, request: Request, params: Params) -> Response:
        """ANY /api/srvIPXT?dom=: the instance list of ``DEFAULT_GROUP@@<dom>``."""
        return await self.list_instances(request, self._legacy(params))

    async def client_beat(self, request: Request, params: Params) -> Response:
        """/api/clientBeat?dom=: a beat for ``DEFAULT_GROUP@@<dom>``."""
        return await self.beat(request, self._legacy(params))

    async def metrics(self, request: Request, params: Params) -> Response:
        """GET /metrics: Prometheus text format."""
        text = "".join(source() for source in self.metric_sources)
        return Response(200, text.encode(), content_type="text/plain; version=0.0.4; charset=utf-8")

    async def healthz(self, request: Request, params: Params) -> Response:
        """GET /healthz: the process is alive."""
        await trio.lowlevel.checkpoint()
        return Response.text(200, "OK")

    async def readyz(self, request: Request, params: Params) -> Response:
        """GET /readyz: 200 once the snapshot is loaded, else 503."""
        if self.node.ready:
            return Response.text(200, "OK")
        return Response.text(NOT_READY_STATUS, NOT_READY_DETAIL_TEXT)

