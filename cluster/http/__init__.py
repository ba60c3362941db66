"""A small, fast, hardened HTTP/1.1 server on trio (hand-written parser, no h11/hypercorn).

See ``docs/http-server.md``.
"""

from cluster.http.server import (
    Deferred,
    FastHandler,
    Handler,
    HttpLimits,
    HttpStats,
    Request,
    Response,
    serve_http,
)

__all__ = ["Deferred", "FastHandler", "Handler", "HttpLimits", "HttpStats", "Request", "Response", "serve_http"]
