"""What the SDK hands out: instances and service snapshots (its errors are in :mod:`distroreg.errors`)."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

DEFAULT_GROUP = "DEFAULT_GROUP"
DEFAULT_CLUSTER = "DEFAULT"
GROUP_SEPARATOR = "@@"


def grouped_name(service: str, group: str | None = None) -> str:
    """``group@@service`` unless ``service`` is already grouped."""
    if GROUP_SEPARATOR in service:
        return service
    return f"{group or DEFAULT_GROUP}{GROUP_SEPARATOR}{service}"


def split_grouped(name: str, default_group: str = DEFAULT_GROUP) -> tuple[str, str]:
    """``(group, service)`` of a possibly grouped name."""
    group, sep, service = name.partition(GROUP_SEPARATOR)
    if sep:
        return group, service
    return default_group, name


@dataclass(frozen=True)
class Instance:
    """One instance of a service as the server listed it. Hashable by ``(ip, port, cluster)``."""

    ip: str
    port: int
    weight: float = 1.0
    healthy: bool = True
    enabled: bool = True
    cluster: str = DEFAULT_CLUSTER
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    service_name: str = ""
    instance_id: str = ""
    ephemeral: bool = True

    def __hash__(self) -> int:
        return hash((self.ip, self.port, self.cluster))

    @property
    def address(self) -> str:
        """``ip:port`` (``[ip]:port`` for IPv6)."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    @classmethod
    def from_json(cls, host: Mapping[str, Any]) -> Instance:
        """Parse one ``hosts`` entry of an ``instance/list`` answer."""
        metadata = host.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            metadata = {}
        healthy = host.get("healthy", host.get("valid", True))
        return cls(
            ip=str(host["ip"]),
            port=int(host["port"]),
            weight=float(host.get("weight", 1.0)),
            healthy=bool(healthy),
            enabled=bool(host.get("enabled", True)),
            cluster=str(host.get("clusterName") or DEFAULT_CLUSTER),
            metadata=MappingProxyType({str(k): str(v) for k, v in metadata.items()}),
            service_name=str(host.get("serviceName") or ""),
            instance_id=str(host.get("instanceId") or ""),
            ephemeral=bool(host.get("ephemeral", True)),
        )


@dataclass(frozen=True)
class ServiceInfo:
    """A snapshot of one service (for one cluster filter), as the SDK's cache holds it.

    ``hosts`` are every listed instance (healthy or not, as the server reported them); ``from_disk`` is true
    when the snapshot came from the disk cache because no server answered.
    """

    name: str
    group: str
    clusters: str
    hosts: tuple[Instance, ...]
    checksum: str = ""
    last_ref_time: int = 0
    cache_millis: int = 1000
    from_disk: bool = False

    @property
    def grouped_name(self) -> str:
        """``group@@name``."""
        return f"{self.group}{GROUP_SEPARATOR}{self.name}"

    def healthy_hosts(self) -> list[Instance]:
        """Healthy, enabled instances with a positive weight (what ``select_instances`` returns)."""
        return [h for h in self.hosts if h.healthy and h.enabled and h.weight > 0]

    @classmethod
    def from_json(cls, raw: str | bytes, *, from_disk: bool = False) -> ServiceInfo:
        """Parse an ``instance/list`` (or pushed, or watched) JSON body; ValueError when it is not one."""
        try:
            data = json.loads(raw)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        name = data.get("name") or data.get("dom")
        if not isinstance(name, str) or not name:
            raise ValueError("no service name")
        group, service = split_grouped(name, str(data.get("groupName") or DEFAULT_GROUP))
        hosts_raw = data.get("hosts") or []
        if not isinstance(hosts_raw, list):
            raise ValueError("hosts is not a list")
        try:
            return cls(
                name=service,
                group=group,
                clusters=str(data.get("clusters") or ""),
                hosts=tuple(Instance.from_json(h) for h in hosts_raw if isinstance(h, dict)),
                checksum=str(data.get("checksum") or ""),
                last_ref_time=int(data.get("lastRefTime") or 0),
                cache_millis=int(data.get("cacheMillis") or 1000),
                from_disk=from_disk,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"bad instance list: {exc!r}") from None


def choose_by_weight(hosts: list[Instance], rng: random.Random) -> Instance:
    """Weighted random choice (Nacos's ``selectOneHealthyInstance``); uniform if every weight is 0."""
    weights = [max(h.weight, 0.0) for h in hosts]
    if sum(weights) <= 0:
        return rng.choice(hosts)
    return rng.choices(hosts, weights=weights, k=1)[0]


__all__ = [
    "DEFAULT_CLUSTER",
    "DEFAULT_GROUP",
    "GROUP_SEPARATOR",
    "Instance",
    "ServiceInfo",
    "choose_by_weight",
    "grouped_name",
    "split_grouped",
]
