"""The readiness gate: a node answers naming reads (and the namespaces list) only once its snapshot is loaded.

A node that has just started (or restarted) holds nothing until a peer's snapshot arrives. Answering
``instance/list`` then would hand clients an empty or partial list, and clients that trust it drop every
instance (the outage Nacos users know). Like Nacos's ``TrafficReviseFilter``, the node answers reads with
503 instead, so that clients try another server (nacos-sdk-python, the Java client and our SDK all do on a
503). Which requests are refused, and the text, are the core's one rule (:mod:`distro.readiness`): naming
reads and the namespaces list only; writes and beats go on to the core, which forwards them to a ready
owner; operator routes, ``/healthz``, ``/readyz``, ``/metrics`` and login stay open. This module is the
HTTP guard that applies it.
"""

from __future__ import annotations

from cluster.api.params import Params
from cluster.http import Request, Response
from cluster.metrics import counter
from distro.node import DistroNode
from distro.readiness import NOT_READY_STATUS, NOT_READY_TEXT, refuses_while_starting

__all__ = ["STARTING_TEXT", "ReadinessGate"]

STARTING_TEXT = NOT_READY_TEXT  # Nacos's text, including its missing space before "now"


class ReadinessGate:
    """An API guard answering 503 to naming reads and the namespaces list (GET) until the node is ready; the
    API lists it first."""

    def __init__(self, node: DistroNode) -> None:
        self._node = node
        self.refused = 0

    def guard(self, request: Request, params: Params) -> Response | None:
        """None to let the request through, or the 503 answering it."""
        if self._node.ready or not refuses_while_starting(request.method, request.path):
            return None
        self.refused += 1
        return Response.text(NOT_READY_STATUS, NOT_READY_TEXT)

    def render_metrics(self) -> str:
        """The refusal counter in Prometheus text format."""
        return counter("distro_not_ready_refusals_total",
                       "Reads (naming, namespaces) answered 503 before the snapshot was loaded.", self.refused)
