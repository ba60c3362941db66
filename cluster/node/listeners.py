"""The one place that opens listening TCP sockets (the HTTP server and the peer link both use it)."""

from __future__ import annotations

import errno
import socket

import trio

__all__ = ["ListenError", "open_listener_pair", "open_listeners"]


class ListenError(OSError):
    """A port could not be opened (in use, not permitted, no such address): says which port and why."""


async def open_listeners(host: str, port: int, *, backlog: int, what: str = "port") -> list[socket.socket]:
    """Non-blocking listening sockets on every address ``host`` resolves to ("" = all), on one port.

    Port 0 picks a free port, the same one on every address. IPv6 sockets are IPv6-only (so the IPv4
    socket can take the same port) and every socket has ``SO_REUSEADDR`` (a restarted node binds at once).
    Raises :class:`ListenError` (naming ``what`` the port is for) when a socket cannot be bound or nothing
    can be opened; on failure every socket opened so far is closed.
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
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                address = f"{host or '*'}:{port}"
                raise ListenError(exc.errno, f"cannot listen on {address} ({what}): {exc.strerror}") from exc
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    if not listeners:
        raise ListenError(f"no address to listen on for {host!r} ({what})")
    return listeners


async def open_listener_pair(
    host: str, port: int, offset: int, *, backlogs: tuple[int, int], whats: tuple[str, str], attempts: int = 50
) -> tuple[list[socket.socket], list[socket.socket]]:
    """Listening sockets on ``port`` and on ``port + offset`` (the HTTP port and the gRPC port beside it).

    With a fixed ``port`` this is two :func:`open_listeners` calls. With port 0 the kernel picks the first
    port; when ``port + offset`` is taken (any program's outgoing connections may hold it), both are
    closed and another port is tried, up to ``attempts`` times, so a node started on port 0 never fails
    for want of the second port. On failure nothing stays open.
    """
    for attempt in range(1, attempts + 1):
        first = await open_listeners(host, port, backlog=backlogs[0], what=whats[0])
        chosen = int(first[0].getsockname()[1])
        try:
            second = await open_listeners(host, chosen + offset, backlog=backlogs[1], what=whats[1])
        except ListenError as exc:
            for sock in first:
                sock.close()
            if port != 0 or attempt == attempts or exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            continue
        except BaseException:
            for sock in first:
                sock.close()
            raise
        return first, second
    raise AssertionError("unreachable")
