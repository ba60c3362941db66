"""The service catalog routes: what the console and operators page through.

``catalog/services``, ``catalog/instances``, ``catalog/service`` (Nacos's ``CatalogController``),
``service/list``, ``service/names`` (``ServiceController``) and the legacy ``api/allDomNames``
(``ApiController``), with Nacos 1.4.2's parameters and shapes; docs/api-naming.md lists where we differ.

All of them read :class:`~distro.catalog.CatalogIndex`: services in name order per namespace and per-service
counts cached by view revision, so a page costs the names of the namespace plus the rows on the page, never
a walk over every instance.
"""

from __future__ import annotations

import json
from typing import Any

import trio

from cluster.api.clusters import service_clusters
from cluster.api.params import Params
from cluster.http import Request, Response
from cluster.node.pump import NodeRuntime
from distro.catalog import CatalogIndex, ServiceSummary
from distro.clusterdata import ClusterMeta
from distro.model import (
    DEFAULT_GROUP,
    DEFAULT_NAMESPACE,
    Instance,
    ServiceKey,
    ServiceMeta,
    ValidationError,
    service_key,
    validate_namespace,
)
from distro.views import ServiceView

__all__ = ["MAX_PAGE_SIZE", "CatalogApi", "cluster_json", "instance_json"]

MAX_PAGE_SIZE = 10_000
"""The largest page any listing answers (Nacos has no bound)."""


def _namespace(params: Params) -> str:
    return validate_namespace(params.get("namespaceId") or DEFAULT_NAMESPACE)


def _page(params: Params, *, default_size: int, required: bool = False) -> tuple[int, int]:
    """``(pageNo, pageSize)``: pages count from 1; a page size of 0 gives empty pages, as in Nacos."""
    if required:
        params.required("pageNo")
        params.required("pageSize")
    page_no = params.integer("pageNo", 1, low=1)
    page_size = params.integer("pageSize", default_size, high=MAX_PAGE_SIZE)
    return page_no, page_size


def _slice(items: list[Any], page_no: int, page_size: int) -> list[Any]:
    start = (page_no - 1) * page_size
    return items[start : start + page_size]


def instance_json(key: ServiceKey, inst: Instance, timings: tuple[int, int, int], last_beat_ms: int | None) -> dict[str, Any]:
    """Nacos's full (server-side) Instance JSON, as ``catalog/instances`` lists it.

    ``timings`` are the defaults of (beat interval, beat timeout, delete timeout); ``lastBeat`` is known only
    to the node that owns the service, and left out elsewhere.
    """
    interval, timeout, delete = timings
    body: dict[str, Any] = {
        "instanceId": inst.instance_id(key),
        "ip": inst.ip,
        "port": inst.port,
        "weight": inst.weight,
        "healthy": inst.healthy,
        "enabled": inst.enabled,
        "ephemeral": True,
        "clusterName": inst.cluster,
        "serviceName": key.grouped_name,
        "metadata": dict(inst.metadata),
    }
    if last_beat_ms is not None:
        body["lastBeat"] = last_beat_ms
    body.update(
        marked=False,
        instanceHeartBeatInterval=inst.beat_interval_ms(interval),
        instanceHeartBeatTimeOut=inst.heartbeat_timeout_ms(timeout),
        ipDeleteTimeout=inst.expire_ms(delete),
        instanceIdGenerator=inst.id_generator,
    )
    return body


def cluster_json(key: ServiceKey, name: str, settings: ClusterMeta, empty: bool) -> dict[str, Any]:
    """Nacos's Cluster JSON (``catalog/service``) with the cluster's settings (``PUT /cluster``; Nacos's
    defaults for a cluster nobody configured). The checker is shown, never run: instances live by beats."""
    return {
        "serviceName": key.grouped_name,
        "name": name,
        "healthChecker": settings.health_checker.to_json(),
        "defaultPort": 80,
        "defaultCheckPort": settings.check_port,
        "useIPPort4Check": settings.use_instance_port,
        "metadata": dict(settings.metadata),
        "sitegroup": "",
        "defCkport": settings.check_port,
        "defIPPort": settings.check_port,
        "empty": empty,
    }


class CatalogApi:
    """The catalog routes of one node (the API lists them)."""

    def __init__(self, runtime: NodeRuntime, index: CatalogIndex) -> None:
        self.runtime = runtime
        self.node = runtime.node
        self.index = index

    # -- catalog/services ---------------------------------------------------------------------------
    def _matching(self, params: Params, namespace: str, *, filters: bool) -> list[ServiceKey]:
        """The namespace's services that pass the name, group, ``hasIpCount`` and ``instance`` filters.

        Nacos matches ``.*group.*@@.*name.*`` as a regular expression; here both are literal substrings.
        """
        name_part = params.get("serviceNameParam") or ""
        group_part = params.get("groupNameParam") or ""
        keys = self.index.keys(namespace)
        if name_part or group_part:
            keys = [k for k in keys if name_part in k.service and group_part in k.group]
        if not filters:
            return keys
        if params.boolean("hasIpCount", False):
            keys = [k for k in keys if (s := self.index.summary(k)) is not None and s.ip_count > 0]
        contained = params.get("instance") or ""
        if contained:
            keys = [k for k in keys if self.index.has_address(k, contained)]
        return keys

    async def services(self, request: Request, params: Params) -> Response:
        """GET /catalog/services: a page of the service table (or of services with their instances)."""
        await trio.lowlevel.checkpoint()
        namespace = _namespace(params)
        page_no, page_size = _page(params, default_size=10)
        if params.boolean("withInstances", False):
            keys = self._matching(params, namespace, filters=False)
            return Response.json([self._detail_row(key) for key in _slice(keys, page_no, page_size)])
        keys = self._matching(params, namespace, filters=True)
        rows = []
        for key in _slice(keys, page_no, page_size):
            summary = self.index.summary(key)
            if summary is not None:
                rows.append(_service_row(summary))
        return Response.json({"serviceList": rows, "count": len(keys)})

    def _detail_row(self, key: ServiceKey) -> dict[str, Any]:
        view = self.index.view(key)
        instances = () if view is None else view.instances
        meta = None if view is None else view.meta
        cluster_map: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for inst in instances:
            cluster_map.setdefault(inst.cluster, {"hosts": []})["hosts"].append(
                {
                    "valid": inst.healthy,
                    "metadata": dict(inst.metadata),
                    "port": inst.port,
                    "ip": inst.ip,
                    "weight": inst.weight,
                    "enabled": inst.enabled,
                }
            )
        return {
            "serviceName": key.service,
            "groupName": key.group,
            "clusterMap": cluster_map,
            "metadata": {} if meta is None else dict(meta.metadata),
        }

    # -- catalog/instances and catalog/service ------------------------------------------------------
    def _key(self, params: Params) -> ServiceKey:
        return service_key(params.get("namespaceId"), params.get("groupName"), params.required("serviceName"))

    async def instances(self, request: Request, params: Params) -> Response:
        """GET /catalog/instances: one cluster's instances, a page at a time (full Instance JSON)."""
        await trio.lowlevel.checkpoint()
        params.spring_required("serviceName")
        key = self._key(params)
        cluster = params.spring_required("clusterName")
        params.spring_required("pageNo")
        params.spring_required("pageSize")
        page_no, page_size = _page(params, default_size=10)
        view = self.index.view(key)
        if view is None:
            return Response.text(404, f"service {key.grouped_name} is not found!")
        members = [inst for inst in view.instances if inst.cluster == cluster]
        if not members and cluster not in view.clusters:  # a configured cluster exists without instances
            return Response.text(404, f"cluster {cluster} is not found!")
        cfg = self.node.config
        timings = (cfg.client_beat_interval_ms, cfg.heartbeat_timeout_ms, cfg.instance_expire_ms)
        page = [
            instance_json(key, inst, timings, self.node.last_beat_ms(key, inst.entry_id))
            for inst in _slice(members, page_no, page_size)
        ]
        return Response.json({"list": page, "count": len(members)})

    async def service(self, request: Request, params: Params) -> Response:
        """GET /catalog/service: the service's settings and its clusters."""
        await trio.lowlevel.checkpoint()
        key = self._key(params)
        view = self.index.view(key)
        if view is None:
            return Response.text(404, f"service {key.grouped_name} is not found!")
        meta = view.meta or ServiceMeta()
        summary = self.index.summary(key)
        with_instances = set(() if summary is None else summary.clusters)
        return Response.json(
            {
                "service": {
                    "name": key.service,
                    "protectThreshold": meta.protect_threshold,
                    "groupName": key.group,
                    "selector": {"type": meta.selector_type},
                    "metadata": dict(meta.metadata),
                },
                "clusters": [
                    cluster_json(key, name, settings, name not in with_instances)
                    for name, settings in service_clusters(view)
                ],
            }
        )

    # -- service/list, service/names, api/allDomNames ----------------------------------------------
    async def service_list(self, request: Request, params: Params) -> Response:
        """GET /service/list: a page of one group's bare names, or of every group's ``group@@name`` (``*``)."""
        await trio.lowlevel.checkpoint()
        page_no, page_size = _page(params, default_size=10, required=True)
        namespace = _namespace(params)
        group = params.get("groupName") or DEFAULT_GROUP
        keys = self.index.keys(namespace)
        if group != "*":
            keys = [k for k in keys if k.group == group]
        selector = params.get("selector") or ""
        if selector:
            keys = self._select(keys, selector)
        names = [k.grouped_name if group == "*" else k.service for k in keys]
        return Response.json({"doms": _slice(names, page_no, page_size), "count": len(names)})

    def _select(self, keys: list[ServiceKey], raw: str) -> list[ServiceKey]:
        """Nacos's label selector: ``INSTANCE.metadata.k = 'v'`` or ``SERVICE.metadata.k = 'v'``."""
        try:
            selector: Any = json.loads(raw)
        except (ValueError, RecursionError):
            raise ValidationError(f"Param 'selector' is illegal, it must be JSON: {raw[:200]}") from None
        if not isinstance(selector, dict) or selector.get("type") not in ("none", "label"):
            raise ValidationError("Param 'selector' is illegal, its type must be none or label")
        expression = selector.get("expression")
        if selector["type"] != "label" or not isinstance(expression, str) or not expression.strip():
            return keys
        terms = "".join(expression.split()).split("=")
        if len(terms) < 2:
            raise ValidationError(f"Param 'selector' is illegal, expression: {expression[:200]}")
        factors = terms[0].split(".")
        wanted_key, wanted_value = factors[-1], terms[1].replace("'", "")
        if factors[0] == "INSTANCE":
            return [k for k in keys if _any_instance_has(self.index.view(k), wanted_key, wanted_value)]
        if factors[0] == "SERVICE":
            return [k for k in keys if _service_has(self.index.view(k), wanted_key, wanted_value)]
        return keys

    async def service_names(self, request: Request, params: Params) -> Response:
        """ANY /service/names: ``{"services": {namespace: [bare names]}, "count": <namespaces>}``."""
        await trio.lowlevel.checkpoint()
        raw_namespace = params.get("namespaceId") or ""
        namespaces = [validate_namespace(raw_namespace)] if raw_namespace else self.index.namespaces()
        expr = params.get("expr") or ""
        responsible_only = params.lenient_boolean("responsibleOnly", False)
        services: dict[str, list[str]] = {}
        for namespace in namespaces:
            names: dict[str, None] = {}
            for key in self.index.keys(namespace):
                if expr not in f"{key.grouped_name}:[]":  # Nacos matches "name:owners" against .*expr.*
                    continue
                if responsible_only and not self.node.is_owner(key):
                    continue
                names[key.service] = None
            services[namespace] = list(names)
        return Response.json({"services": services, "count": len(services)})

    async def all_dom_names(self, request: Request, params: Params) -> Response:
        """ANY /api/allDomNames: every namespace's bare names; ``count`` is their total."""
        await trio.lowlevel.checkpoint()
        responsible_only = params.lenient_boolean("responsibleOnly", False)
        doms: dict[str, list[str]] = {}
        count = 0
        for namespace in self.index.namespaces():
            names: dict[str, None] = {}
            for key in self.index.keys(namespace):
                if not responsible_only or self.node.is_owner(key):
                    names[key.service] = None
            doms[namespace] = list(names)
            count += len(names)
        return Response.json({"count": count, "doms": doms})


def _service_row(summary: ServiceSummary) -> dict[str, Any]:
    key = summary.key
    return {
        "name": key.service,
        "groupName": key.group,
        "clusterCount": len(summary.clusters),
        "ipCount": summary.ip_count,
        "healthyInstanceCount": summary.healthy_count,
        "triggerFlag": "true" if summary.trigger_flag else "false",
    }


def _any_instance_has(view: ServiceView | None, key: str, value: str) -> bool:
    return view is not None and any(inst.metadata.get(key) == value for inst in view.instances)


def _service_has(view: ServiceView | None, key: str, value: str) -> bool:
    meta = None if view is None else view.meta
    return meta is not None and meta.metadata.get(key) == value

