"""The one renderer of the service-list body: what ``GET /nacos/v1/ns/instance/list`` answers.

The HTTP route, the UDP push (whose packets carry this body as a string), the HTTP watch and the gRPC front
door (the same list in Nacos 2.x's ``serviceInfo`` shape, :meth:`ListRenderer.service_info`) all build it
here, so a client sees the same document whichever way it learns of a change. The ``hosts`` array is the
expensive part: it is kept per (service, clusters the service has, healthyOnly, client flavour) until the
service's view has a new revision, in a cache bounded in bytes (:mod:`cluster.api.hostscache`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import compress, repeat
from json.encoder import encode_basestring as _quote  # what _JSON does to a str (ensure_ascii=False), in C
from operator import is_not, itemgetter
from typing import cast

from cluster.api.hostscache import (
    DEFAULT_MAX_BYTES,
    FRAGMENT_MIN_HOSTS,
    FRAGMENT_OVERHEAD_BYTES,
    Fragments,
    HostsCache,
)
from cluster.node.pump import NodeRuntime
from distro.model import Instance, ServiceKey
from distro.views import ServiceView, select_hosts

__all__ = ["DEFAULT_CACHE_MILLIS", "JAVA_AGENT", "PUSH_CACHE_MILLIS", "ListQuery", "ListRenderer"]

DEFAULT_CACHE_MILLIS = 3000
"""The ``cacheMillis`` announced to a client that is not a push subscriber (Nacos's default)."""
JAVA_AGENT = "Nacos-Java-Client"
"""User-Agent prefix of the Java client, which expects grouped service names in the list."""
PUSH_CACHE_MILLIS = 10_000
"""The ``cacheMillis`` of a 2.x service info (clients that get pushes poll rarely)."""
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_MISS = (None, b"")  # a fragment never kept: held by no instance


@dataclass(frozen=True, slots=True)
class ListQuery:
    """What a list is asked for: the service, a cluster filter (empty: all), and who asks."""

    key: ServiceKey
    clusters: tuple[str, ...] = ()
    healthy_only: bool = False
    java: bool = False  # the Java client gets ``group@@name`` as each host's ``serviceName`` and the ``dom``


class ListRenderer:
    """Builds ``instance/list`` bodies from this node's read views. One per node, shared by its API parts."""

    def __init__(self, runtime: NodeRuntime, *, cache_max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._runtime = runtime
        self._node = runtime.node
        self.hosts_cache = HostsCache(cache_max_bytes)
        self._last_stamp = 0

    def render(self, query: ListQuery, *, cache_millis: int = DEFAULT_CACHE_MILLIS) -> bytes:
        """The UTF-8 JSON body for ``query``, announcing ``cache_millis``."""
        key = query.key
        clusters_text = ",".join(query.clusters)
        now_ms = self._runtime.now_ms()
        view = self._node.view(key)
        if view is None:
            empty = {
                "name": key.grouped_name,
                "groupName": key.group,
                "clusters": clusters_text,
                "cacheMillis": cache_millis,
                "hosts": [],
                "lastRefTime": now_ms,
                "checksum": "",
                "allIPs": False,
                "reachProtectionThreshold": False,
                "valid": True,
            }
            return _JSON.encode(empty).encode("utf-8", "replace")
        hosts_json, protected = self._hosts_json(view, query)
        name = key.grouped_name if query.java else key.service
        meta = {} if view.meta is None else dict(view.meta.metadata)
        head = (
            f'{{"name":{json.dumps(key.grouped_name)},"dom":{json.dumps(name)},"groupName":{json.dumps(key.group)},'
            f'"clusters":{json.dumps(clusters_text)},"cacheMillis":{cache_millis},"lastRefTime":{now_ms},'
            f'"checksum":"{view.checksum}","allIPs":false,"useSpecifiedURL":false,'
            f'"reachProtectionThreshold":{"true" if protected else "false"},"valid":true,"env":"",'
            f'"metadata":{json.dumps(meta, ensure_ascii=False)},"hosts":'
        ).encode()
        return b"".join((head, hosts_json, b"}"))  # one copy of a body that may be megabytes

    def service_info(self, query: ListQuery) -> bytes:
        """The same list in Nacos 2.x's ``serviceInfo`` shape (gRPC answers and pushes).

        ``name`` is the bare service name (2.x clients key their caches by ``groupName`` + ``name``),
        hosts carry the grouped ``serviceName``, and ``lastRefTime`` is :meth:`stamp`: nacos-sdk-python
        3.x drops a service info whose ``lastRefTime`` is not greater than the one it holds.
        """
        key = query.key
        clusters_text = ",".join(query.clusters)
        view = self._node.view(key)
        if view is None:
            hosts_json, protected, checksum = b"[]", False, ""
        else:
            hosts_json, protected = self._hosts_json(view, ListQuery(key, query.clusters, query.healthy_only, True))
            checksum = view.checksum
        head = (
            f'{{"name":{json.dumps(key.service)},"groupName":{json.dumps(key.group)},'
            f'"clusters":{json.dumps(clusters_text)},"cacheMillis":{PUSH_CACHE_MILLIS},"lastRefTime":{self.stamp()},'
            f'"checksum":"{checksum}","allIPs":false,'
            f'"reachProtectionThreshold":{"true" if protected else "false"},"valid":true,"hosts":'
        ).encode()
        return head + hosts_json + b"}"

    def stamp(self) -> int:
        """The node's clock in ms, moved on by one when needed so that every stamp is greater than the last."""
        stamp = max(self._runtime.now_ms(), self._last_stamp + 1)
        self._last_stamp = stamp
        return stamp

    def _hosts_json(self, view: ServiceView, query: ListQuery) -> tuple[bytes, bool]:
        clusters = self.hosts_cache.normalise(view, query.clusters)
        if clusters is None:  # only clusters the service does not have: nothing to select, nothing to keep
            return b"[]", False
        form = (clusters, query.healthy_only, query.java)
        cached = self.hosts_cache.get(view, form)
        if cached is not None:
            return cached
        selection = select_hosts(view, clusters, query.healthy_only)
        service_name = view.key.grouped_name if query.java else view.key.service
        hosts = selection.hosts
        if selection.protect_triggered or len(hosts) < FRAGMENT_MIN_HOSTS:
            # protection hands out fresh copies reported healthy: nothing worth keeping per host
            body = _JSON.encode([self._host(inst, view.key, service_name) for inst in hosts]).encode()
        else:
            body = self._joined(view, hosts, service_name, query.java, keep=form == ((), False, query.java))
        self.hosts_cache.put(view, form, body, selection.protect_triggered)
        return body, selection.protect_triggered

    def _joined(self, view: ServiceView, hosts: tuple[Instance, ...], service_name: str, java: bool, *,
                keep: bool) -> bytes:
        """The hosts array joined from kept per-host fragments, rendering only the hosts that changed.

        Only the unfiltered form replaces what is kept (so the kept set follows the service's instances);
        filtered forms read it and render their misses without keeping them.
        """
        ids = list(map(id, hosts))
        hits = list(map(self.hosts_cache.fragments(view, java).get, ids, repeat(_MISS)))
        # A hit holds the very instance it was rendered from (ids of dead objects are reused); C-level passes
        # throughout: after a change to one host of 10,000, this is what a list costs.
        stale = list(compress(range(len(ids)), map(is_not, map(itemgetter(0), hits), hosts)))
        if stale:
            fragments = self._host_fragments([hosts[i] for i in stale], view.key, service_name)
            for i, fragment in zip(stale, fragments, strict=True):
                hits[i] = (hosts[i], fragment)
        parts = list(map(itemgetter(1), hits))
        if keep:
            size_bytes = sum(map(len, parts)) + FRAGMENT_OVERHEAD_BYTES * len(parts)
            kept = cast(Fragments, dict(zip(ids, hits, strict=True)))  # no _MISS is left in hits
            self.hosts_cache.keep_fragments(view, java, kept, size_bytes)
        return b"".join((b"[", b",".join(parts), b"]"))

    def _host_fragments(self, hosts: Iterable[Instance], key: ServiceKey, service_name: str) -> list[bytes]:
        """Each host's JSON object, byte for byte what ``_JSON.encode(self._host(...))`` gives, about three
        times cheaper: the fields are formatted into one string, and everything that follows from the
        metadata alone (the map itself, the three timings, the id generator) is encoded once per distinct
        metadata mapping (instances share them). The first list of a 10,000-instance service renders every
        host; at ~6 us each that held the node for 60-110 ms."""
        cfg = self._node.config
        grouped = key.grouped_name
        service = _quote(service_name)
        tails: dict[int, tuple[Mapping[str, str], str]] = {}  # id(metadata) -> (metadata, the object's tail)
        out: list[bytes] = []
        append = out.append
        for inst in hosts:
            metadata = inst.metadata
            tail = tails.get(id(metadata))
            if tail is None or tail[0] is not metadata:
                tail = tails[id(metadata)] = (metadata, (
                    f',"metadata":{_JSON.encode(dict(metadata))},'
                    f'"instanceHeartBeatInterval":{inst.beat_interval_ms(cfg.client_beat_interval_ms)},'
                    f'"instanceHeartBeatTimeOut":{inst.heartbeat_timeout_ms(cfg.heartbeat_timeout_ms)},'
                    f'"ipDeleteTimeout":{inst.expire_ms(cfg.instance_expire_ms)},'
                    f'"instanceIdGenerator":{_quote(inst.id_generator)}}}'
                ))
            ip = inst.ip
            port = inst.port
            cluster = inst.cluster
            instance_id = inst.assigned_id or f"{ip}#{port}#{cluster}#{grouped}"
            healthy = "true" if inst.healthy else "false"
            append((
                f'{{"instanceId":{_quote(instance_id)},"ip":{_quote(ip)},"port":{port!r},'
                f'"weight":{float.__repr__(inst.weight)},"healthy":{healthy},"valid":{healthy},"marked":false,'
                f'"enabled":{"true" if inst.enabled else "false"},"ephemeral":true,'
                f'"clusterName":{_quote(cluster)},"serviceName":{service}{tail[1]}'
            ).encode())
        return out

    def _host(self, inst: Instance, key: ServiceKey, service_name: str) -> dict[str, object]:
        """One host object of the ``hosts`` array, as Nacos 1.4.2 shows it."""
        cfg = self._node.config
        return {
            "instanceId": inst.instance_id(key),
            "ip": inst.ip,
            "port": inst.port,
            "weight": inst.weight,
            "healthy": inst.healthy,
            "valid": inst.healthy,
            "marked": False,
            "enabled": inst.enabled,
            "ephemeral": True,
            "clusterName": inst.cluster,
            "serviceName": service_name,
            "metadata": dict(inst.metadata),
            "instanceHeartBeatInterval": inst.beat_interval_ms(cfg.client_beat_interval_ms),
            "instanceHeartBeatTimeOut": inst.heartbeat_timeout_ms(cfg.heartbeat_timeout_ms),
            "ipDeleteTimeout": inst.expire_ms(cfg.instance_expire_ms),
            "instanceIdGenerator": inst.id_generator,
        }
