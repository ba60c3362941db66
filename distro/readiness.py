"""The "not ready" rule, in one place: what a starting node refuses, and the Nacos text it answers with.

A node starts not ready and owns nothing until it has loaded a peer's snapshot (see :mod:`distro.snapshot`).
Until then:

- a naming read (``GET`` or ``HEAD``, in any case, under ``/nacos/v1/ns/``) is answered ``503`` :data:`NOT_READY_TEXT`, because an
  empty or partial ``instance/list`` would make clients drop every instance; so is a read of the namespaces
  list (``/nacos/v1/console/namespaces``), cluster data that a node started with an empty data folder
  does not hold yet. Operator routes (``/nacos/v1/ns/operator/``) stay open so that operators can see why,
  as does everything else (``/healthz``, ``/readyz``, the console's health probes, ``/metrics``, login).
  Like Nacos's ``TrafficReviseFilter``; clients try another server on a 503. :func:`refuses_while_starting`
  is that rule.
- a write is forwarded to a ready owner; when no owner is known at all (this node is not ready and no ready
  peer is up) the core answers :data:`NOT_READY` itself, and so does "who owns this key".
- ``/readyz`` answers ``503`` :data:`NOT_READY_DETAIL_TEXT`.

The texts are Nacos's, including its missing space before "now".
"""

from __future__ import annotations

from distro.requests import Result

__all__ = [
    "GATED_PATHS",
    "GATED_PREFIX",
    "NOT_READY",
    "NOT_READY_DETAIL_TEXT",
    "NOT_READY_STATUS",
    "NOT_READY_TEXT",
    "OPEN_PREFIX",
    "refuses_while_starting",
]

NOT_READY_STATUS = 503
NOT_READY_TEXT = "server is STARTINGnow, please try again later!"
"""The body of every 503 a starting node answers a naming request with (Nacos's text)."""
NOT_READY_DETAIL_TEXT = "server is STARTINGnow, detailed error message: snapshot not loaded yet"
"""The body of ``/readyz`` while the node is not ready."""
NOT_READY = Result(NOT_READY_STATUS, NOT_READY_TEXT)
"""The core's answer to a write when no owner is known."""

GATED_PREFIX = "/nacos/v1/ns/"
"""Naming reads under this prefix are refused while starting..."""
OPEN_PREFIX = "/nacos/v1/ns/operator/"
"""...except the operator routes under this one."""
GATED_PATHS = frozenset({"/nacos/v1/console/namespaces"})
"""Reads of these paths (a trailing ``/`` ignored, as the router does) are refused while starting too."""
_READS = frozenset({"GET", "HEAD"})  # methods are compared upper-cased: the router takes ``get`` and HEAD as GET


def refuses_while_starting(method: str, path: str) -> bool:
    """True when a node that is not ready must answer this HTTP request ``503`` :data:`NOT_READY_TEXT`.

    Only reads are refused (naming reads and the namespaces list): writes and beats go on to the core,
    which forwards them to a ready owner (or answers :data:`NOT_READY` when there is none).
    """
    if method.upper() not in _READS:
        return False
    if path.startswith(GATED_PREFIX):
        return not path.startswith(OPEN_PREFIX)
    return path.rstrip("/") in GATED_PATHS
