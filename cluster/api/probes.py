"""Nacos's console health probes, which compose files and orchestrators point their checks at.

* ``GET /nacos/v1/console/health/liveness``: ``200 OK`` while the process serves HTTP;
* ``GET /nacos/v1/console/health/readiness``: ``200 OK`` once the node is ready (its snapshot is loaded),
  else ``500 Naming is not in readiness`` (Nacos's status and text; there is no config service here, so
  the config half of Nacos's check always passes).

Both are open (no token, no readiness gate), like ``/healthz`` and ``/readyz``.
"""

from __future__ import annotations

import trio

from cluster.api.params import Params
from cluster.http import Request, Response
from distro.node import DistroNode

__all__ = ["LIVENESS_PATH", "NAMING_NOT_READY", "READINESS_PATH", "ConsoleProbes"]

LIVENESS_PATH = "/nacos/v1/console/health/liveness"
READINESS_PATH = "/nacos/v1/console/health/readiness"
NAMING_NOT_READY = "Naming is not in readiness"


class ConsoleProbes:
    """The two probe routes of one node."""

    def __init__(self, node: DistroNode) -> None:
        self._node = node

    async def liveness(self, request: Request, params: Params) -> Response:
        """GET /nacos/v1/console/health/liveness."""
        await trio.lowlevel.checkpoint()
        return Response.text(200, "OK")

    async def readiness(self, request: Request, params: Params) -> Response:
        """GET /nacos/v1/console/health/readiness."""
        await trio.lowlevel.checkpoint()
        if self._node.ready:
            return Response.text(200, "OK")
        return Response.text(500, NAMING_NOT_READY)
