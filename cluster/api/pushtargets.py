"""Where UDP pushes may go, and how much one address may be sent: the push service's guard against
reflection (issue 14, finding 2).

Nacos takes a subscriber's push address from the ``clientIP`` parameter of its list call, so anyone who
may call the API can aim pushes at a third party. Here:

* **The source address by default.** A subscription's target is the TCP source address of the list
  call that made it, with the ``udpPort`` it announces: the caller can only have pushes sent to an
  address it is sending from (which TCP, unlike UDP, proves). ``clientIP`` is honoured only for calls
  *from* the operator's ``trusted_networks`` (``--push-trusted-networks``, CIDRs: a NAT gateway or a
  proxy whose clients announce their own address); from anywhere else it is ignored.
* **Per target, bounded.** At most ``max_subscribers_per_target`` subscriptions per target IP address
  (every port and service together), and a token bucket of ``target_burst_bytes`` refilled at
  ``target_bytes_per_s`` per target IP: a datagram that does not fit is not sent (counted; the client's
  poll covers it). The buckets exist only for addresses with subscribers, so they are bounded with them.

:class:`TargetPolicy` holds the rule and the per-target state; :class:`cluster.api.push.PushService`
asks it where a subscription points, whether it may be added, and whether a datagram may go.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Network", "TargetPolicy", "TargetStats", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """``10.0.0.0/8, 192.168.1.7`` -> networks; raises ValueError naming a bad entry."""
    networks: list[Network] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"not a network in CIDR notation: {part!r}") from None
    return tuple(networks)


@dataclass
class TargetStats:
    """Counters for /metrics."""

    ignored_client_ips: int = 0  # clientIP named another address from an untrusted source
    refused_per_target: int = 0  # subscriptions refused over max_subscribers_per_target
    throttled_datagrams: int = 0  # datagrams not sent for want of the target's bytes
    throttled_bytes: int = 0


class _Bucket:
    __slots__ = ("level", "updated")

    def __init__(self, level: float, updated: float) -> None:
        self.level = level
        self.updated = updated


class TargetPolicy:
    """The push target rule and the per-target bounds of one node's push service."""

    def __init__(
        self,
        *,
        trusted_networks: Sequence[Network] = (),
        max_subscribers_per_target: int = 512,
        target_bytes_per_s: int = 1_048_576,
        target_burst_bytes: int = 1_048_576,
        clock: Callable[[], float],
    ) -> None:
        self.trusted_networks = tuple(trusted_networks)
        self.max_subscribers_per_target = max_subscribers_per_target
        self.target_bytes_per_s = target_bytes_per_s
        self.target_burst_bytes = target_burst_bytes
        self._clock = clock
        self._subscribers: dict[str, int] = {}  # target ip -> subscriptions pointing at it
        self._buckets: dict[str, _Bucket] = {}  # target ip -> bytes it may still be sent
        self.stats = TargetStats()

    # -- where ----------------------------------------------------------------------------------
    def target_ip(self, source: str, client_ip: str | None) -> str | None:
        """The address pushes of a subscription made from ``source`` go to, or None when there is none.

        ``client_ip`` counts only from a trusted source; the result is a normalised address text
        (IPv4-mapped IPv6 as IPv4), never unspecified or multicast.
        """
        chosen = _address(source)
        if client_ip and self.trusted_networks and chosen is not None and self._trusted(chosen):
            named = _address(client_ip)
            if named is not None:
                chosen = named
        elif client_ip and chosen is not None and _address(client_ip) not in (None, chosen):
            self.stats.ignored_client_ips += 1
        if chosen is None or chosen.is_unspecified or chosen.is_multicast:
            return None
        return str(chosen)

    def _trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address.version == net.version and address in net for net in self.trusted_networks)

    # -- how many -------------------------------------------------------------------------------
    def may_add(self, ip: str) -> bool:
        """Whether one more subscription may point at ``ip``."""
        if self._subscribers.get(ip, 0) >= self.max_subscribers_per_target:
            self.stats.refused_per_target += 1
            return False
        return True

    def added(self, ip: str) -> None:
        """A subscription now points at ``ip``."""
        self._subscribers[ip] = self._subscribers.get(ip, 0) + 1

    def removed(self, ip: str) -> None:
        """A subscription pointing at ``ip`` is gone (its bucket goes with the last one)."""
        left = self._subscribers.get(ip, 0) - 1
        if left > 0:
            self._subscribers[ip] = left
        else:
            self._subscribers.pop(ip, None)
            self._buckets.pop(ip, None)

    # -- how much -------------------------------------------------------------------------------
    def may_send(self, ip: str, size_bytes: int) -> bool:
        """Take ``size_bytes`` from ``ip``'s bucket; False (and counted) when they are not there."""
        now = self._clock()
        bucket = self._buckets.get(ip)
        if bucket is None:
            bucket = self._buckets[ip] = _Bucket(float(self.target_burst_bytes), now)
        else:
            refill = (now - bucket.updated) * self.target_bytes_per_s
            bucket.level = min(float(self.target_burst_bytes), bucket.level + refill)
            bucket.updated = now
        if bucket.level < size_bytes:
            self.stats.throttled_datagrams += 1
            self.stats.throttled_bytes += size_bytes
            return False
        bucket.level -= size_bytes
        return True

    @property
    def targets(self) -> int:
        """Target addresses with at least one subscription."""
        return len(self._subscribers)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
