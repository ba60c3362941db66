"""The ``serviceInfo`` JSON of Nacos 2.x (query answers, subscription answers and pushes).

Its shape differs from the v1 ``instance/list`` body in one field that matters: ``name`` is the bare service
name (the group travels in ``groupName``), which is how 2.x clients key their caches. Hosts carry the 2.x
``Instance`` fields. Every field is present (the Rust SDK requires them all).

``lastRefTime`` must grow strictly from one answer to the next for a client: nacos-sdk-python 3.x drops a
service info whose ``lastRefTime`` is not greater than the one it holds. :class:`ServiceInfoRenderer` stamps
each rendering with a node-wide clock that is the wall clock in milliseconds, moved on by one when two
renderings fall in the same millisecond. The hosts part is cached per view revision and filter, so a push to
many subscribers of one service renders it once.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from distro.config import DistroConfig
from distro.model import ServiceKey
from distro.views import ServiceView, select_hosts

CACHE_MILLIS = 10_000
MAX_CACHED = 20_000


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class ServiceInfoRenderer:
    """Renders service infos for one node; ``now_ms`` is the node's clock."""

    def __init__(self, now_ms: Callable[[], int], config: DistroConfig) -> None:
        self._now_ms = now_ms
        self._config = config
        self._last_stamp = 0
        self._hosts: dict[tuple[ServiceKey, str, bool], tuple[int, str, bool]] = {}

    def stamp(self) -> int:
        """A ``lastRefTime``: the clock in ms, strictly greater than every earlier stamp of this node."""
        stamp = max(self._now_ms(), self._last_stamp + 1)
        self._last_stamp = stamp
        return stamp

    def _hosts_json(self, view: ServiceView, clusters: str, healthy_only: bool) -> tuple[str, bool]:
        cache_key = (view.key, clusters, healthy_only)
        cached = self._hosts.get(cache_key)
        if cached is not None and cached[0] == view.revision:
            return cached[1], cached[2]
        wanted = [c for c in clusters.split(",") if c]
        selection = select_hosts(view, wanted, healthy_only)
        key = view.key
        grouped = key.grouped_name
        cfg = self._config
        hosts = [
            {
                "instanceId": inst.instance_id(key),
                "ip": inst.ip,
                "port": inst.port,
                "weight": inst.weight,
                "healthy": inst.healthy,
                "enabled": inst.enabled,
                "ephemeral": True,
                "clusterName": inst.cluster,
                "serviceName": grouped,
                "metadata": dict(inst.metadata),
                "instanceHeartBeatInterval": inst.beat_interval_ms(cfg.client_beat_interval_ms),
                "instanceHeartBeatTimeOut": inst.heartbeat_timeout_ms(cfg.heartbeat_timeout_ms),
                "ipDeleteTimeout": inst.expire_ms(cfg.instance_expire_ms),
                "instanceIdGenerator": "simple",
            }
            for inst in selection.hosts
        ]
        text = _dumps(hosts)
        if len(self._hosts) >= MAX_CACHED:
            self._hosts.clear()
        self._hosts[cache_key] = (view.revision, text, selection.protect_triggered)
        return text, selection.protect_triggered

    def render(self, key: ServiceKey, view: ServiceView | None, clusters: str, healthy_only: bool) -> bytes:
        """The service info of ``key`` (``view`` None: the service does not exist here)."""
        if view is None:
            hosts, protected, checksum = "[]", False, ""
        else:
            hosts, protected = self._hosts_json(view, clusters, healthy_only)
            checksum = view.checksum
        text = (
            f'{{"name":{_dumps(key.service)},"groupName":{_dumps(key.group)},"clusters":{_dumps(clusters)},'
            f'"cacheMillis":{CACHE_MILLIS},"hosts":{hosts},"lastRefTime":{self.stamp()},'
            f'"checksum":"{checksum}","allIPs":false,'
            f'"reachProtectionThreshold":{"true" if protected else "false"},"valid":true}}'
        )
        return text.encode("utf-8", "surrogatepass")


__all__ = ["CACHE_MILLIS", "ServiceInfoRenderer"]
