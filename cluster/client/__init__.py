"""The Python SDK of the registry: ``NamingClient`` (async, trio or asyncio), ``SyncNamingClient`` (blocking),
``LoadBalancedTransport`` (httpx calls by service name). docs/api.md, "Python SDK", has the guide.

    from cluster.client import NamingClient, LoadBalancedTransport

    async with NamingClient(["127.0.0.1:8848"], cache_dir="~/.cache/naming") as naming:
        await naming.register_instance("goods-service", ip="10.0.0.5", port=8080)
        instance = await naming.select_one_healthy_instance("goods-service")
        async with naming.subscribe("goods-service") as changes:
            async for service_info in changes:
                print([h.address for h in service_info.hosts])
"""

from cluster.client.cache import DiskCache
from cluster.client.lb import LoadBalancedTransport, SyncLoadBalancedTransport
from cluster.client.model import (
    Instance,
    NamingError,
    NamingUnavailable,
    NoInstanceError,
    ServiceInfo,
)
from cluster.client.naming import USER_AGENT, ClientStats, NamingClient, PushMode, Subscription, local_ip_for
from cluster.client.sync import SyncNamingClient, SyncSubscription

__all__ = [
    "USER_AGENT",
    "ClientStats",
    "DiskCache",
    "Instance",
    "LoadBalancedTransport",
    "NamingClient",
    "NamingError",
    "NamingUnavailable",
    "NoInstanceError",
    "PushMode",
    "ServiceInfo",
    "Subscription",
    "SyncLoadBalancedTransport",
    "SyncNamingClient",
    "SyncSubscription",
    "local_ip_for",
]
