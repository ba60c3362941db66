"""File descriptors: the node raises its soft limit at start and keeps client connections below it.

A process's soft ``RLIMIT_NOFILE`` is often 1,024 while ``--max-connections`` is 4,096: the HTTP server
would then meet ``EMFILE`` long before its own cap, and so would everything else that needs a
descriptor at that moment (peer links being accepted, the gRPC port, files in the data folder). So at
start (:func:`plan_connections`):

1. the soft limit is raised to the hard limit (the most an unprivileged process may have);
2. ``--fd-reserve`` descriptors (plus four per peer: its inbound and outbound links, with room to
   redial) are kept back for everything that is not a client HTTP connection;
3. the HTTP server's cap is the smaller of ``--max-connections`` and what is left, and the cap per client
   address (``--max-connections-per-ip``) stays below half of that, so that one address never holds
   every slot.

What was chosen is logged in one line. Should descriptors run out anyway, the HTTP server answers the
waiting clients 503 with a descriptor it holds back for that (:mod:`cluster.http.server`).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

__all__ = ["FD_PER_PEER", "MIN_CONNECTIONS", "ConnectionPlan", "plan_connections", "raise_soft_limit"]

FD_PER_PEER = 4
MIN_CONNECTIONS = 16
"""The cap is never planned below this (a node with almost no descriptors still serves a few clients)."""
_NO_LIMIT_FDS = 1 << 20  # what "unlimited" is raised to (the kernel's usual nr_open)


def raise_soft_limit() -> tuple[int, int, int]:
    """Raise the soft descriptor limit to the hard one: ``(soft before, soft now, hard)``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _NO_LIMIT_FDS if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):  # e.g. above the kernel's nr_open: keep what we have
        return soft, soft, hard
    return soft, target, hard


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """The client connection caps the node runs with, and why."""

    max_connections: int
    max_connections_per_ip: int
    soft_limit: int
    reserve: int

    def describe(self, asked_connections: int, asked_per_ip: int) -> str:
        """The log line."""
        return (
            f"file descriptors: soft limit {self.soft_limit}, {self.reserve} kept for peer links, gRPC, the data "
            f"folder and the rest; client connections at most {self.max_connections} (asked {asked_connections}), "
            f"{self.max_connections_per_ip} per client address (asked {asked_per_ip})"
        )


def plan_connections(
    soft_limit: int, *, max_connections: int, max_connections_per_ip: int, fd_reserve: int, peers: int
) -> ConnectionPlan:
    """The caps for a process whose soft limit is ``soft_limit`` (see the module's docstring)."""
    reserve = fd_reserve + FD_PER_PEER * peers
    room = soft_limit - reserve if soft_limit != resource.RLIM_INFINITY else max_connections
    connections = max(MIN_CONNECTIONS, min(max_connections, room))
    per_ip = max(1, min(max_connections_per_ip, connections // 2))
    return ConnectionPlan(connections, per_ip, soft_limit, reserve)
