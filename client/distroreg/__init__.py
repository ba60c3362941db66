"""distroreg, the Python SDK of distro-registry (it speaks Nacos's v1 HTTP naming API):
``NamingClient`` (async, trio or asyncio), ``SyncNamingClient`` (blocking), ``LoadBalancedTransport`` (httpx
calls by service name). Installed with ``pip install ./client`` (the distribution ``distroreg-client``);
docs/api.md, "Python SDK", has the guide. Its errors are drawn in :mod:`distroreg.errors`.

    from distroreg import NamingClient, LoadBalancedTransport

    async with NamingClient(["127.0.0.1:8848"], cache_dir="~/.cache/naming") as naming:
        await naming.register_instance("goods-service", ip="10.0.0.5", port=8080)
        instance = await naming.select_one_healthy_instance("goods-service")
        async with naming.subscribe("goods-service") as changes:
            async for service_info in changes:
                print([h.address for h in service_info.hosts])
"""

from distroreg.cache import DiskCache
from distroreg.errors import NamingError, NamingUnavailable, NoInstanceError, ServerFailure
from distroreg.lb import LoadBalancedTransport, SyncLoadBalancedTransport
from distroreg.model import Instance, ServiceInfo
from distroreg.naming import (
    USER_AGENT,
    ClientStats,
    NamingClient,
    PushMode,
    Subscription,
    __version__,
    local_ip_for,
)
from distroreg.servers import ServerPool, SyncServerPool
from distroreg.sync import SyncNamingClient, SyncSubscription

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
    "ServerFailure",
    "ServerPool",
    "ServiceInfo",
    "Subscription",
    "SyncLoadBalancedTransport",
    "SyncNamingClient",
    "SyncServerPool",
    "SyncSubscription",
    "__version__",
    "local_ip_for",
]
