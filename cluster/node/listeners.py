"""The one place that opens listening TCP sockets (the HTTP server and the peer link both use it)."""

from __future__ import annotations

import socket

import trio

__all__ = ["open_listeners"]


async def open_listeners(host: str, port: int, *, backlog: int) -> list[socket.socket]:
    """Non-blocking listening sockets on every address ``host`` resolves to ("" = all), on one port.

    Port 0 picks a free port, the same one on every address. IPv6 sockets are IPv6-only (so the IPv4
    socket can take the same port) and every socket has ``SO_REUSEADDR`` (a restarted node binds at once).
    Raises OSError when nothing can be opened; on failure every socket opened so far is closed.
    """
    infos = await trio.socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listeners: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, socktype, proto, _, sockaddr in infos:
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            sock = socket.socket(family, socktype, proto)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(listeners) > 1:  # the port the first one got, on every address
                sockaddr = (sockaddr[0], listeners[0].getsockname()[1], *sockaddr[2:])
            sock.bind(sockaddr)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    if not listeners:
        raise OSError(f"no address to listen on for {host!r}")
    return listeners
