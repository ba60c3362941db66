"""The Nacos 2.x/3.x gRPC front door: HTTP/2 (our own framer, hpack, trio) beside the v1 HTTP API, feeding the same core.

Modules, outside in: :mod:`~cluster.grpc.server` (listener, connection life, detection, metrics),
:mod:`~cluster.grpc.connection` (one HTTP/2 connection: the framer, one writer, bounds),
:mod:`~cluster.grpc.wire` (the Payload protobuf and gRPC framing), :mod:`~cluster.grpc.requests` (typed
calls parsed in one pass), :mod:`~cluster.grpc.naming` (what each call does),
:mod:`~cluster.grpc.subscriptions` (pushes), :mod:`~cluster.grpc.responses` (what goes back; the service
lists come from the one renderer, :mod:`cluster.api.render`). docs/grpc.md describes the protocol and the choices.
"""

from cluster.grpc.connection import GrpcLimits
from cluster.grpc.server import GrpcServer, grpc_port

__all__ = ["GrpcLimits", "GrpcServer", "grpc_port"]
