"""A gRPC subscription is a subscriber too: ``GrpcServer.subscriber_rows`` (what ``service/subscribers``
lists with protocol ``grpc``) shows the connection's address and client version while it subscribes."""

from __future__ import annotations

from distro.model import ServiceKey
from tests.grpc.test_server import client, one_node
from tests.polling import wait_for

KEY = ServiceKey("public", "DEFAULT_GROUP", "orders")


async def test_grpc_subscriptions_are_listed_as_subscribers() -> None:
    async with one_node() as node, client(node) as c:
        assert node.server.subscriber_rows(KEY) == []
        await c.call("SubscribeServiceRequest", {"serviceName": "orders", "subscribe": True, "clusters": "c1"})
        ((addr, agent, app, ip, port, clusters, protocol),) = node.server.subscriber_rows(KEY)
        assert (ip, clusters, protocol, app) == ("127.0.0.1", "c1", "grpc", "")
        assert addr == f"{ip}:{port}" and agent  # the version the client announced at setup
        await c.call("SubscribeServiceRequest", {"serviceName": "orders", "subscribe": False, "clusters": "c1"})
        await wait_for(lambda: node.server.subscriber_rows(KEY) == [])
