"""The tests' Nacos gRPC client: cluster/grpc/client.py's, which can also misbehave on purpose (raw bytes with
``call_raw``, ``auto_ack = False`` never answers a push, a client that never calls ``pump`` never reads)."""

from __future__ import annotations

from cluster.grpc.client import BI, UNARY, GrpcClient


class GrpcTestClient(GrpcClient):
    """cluster.grpc.client.GrpcClient under the name the tests use (not a test class for pytest)."""

    __test__ = False


__all__ = ["BI", "UNARY", "GrpcTestClient"]
