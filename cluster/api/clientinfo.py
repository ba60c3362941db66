"""Who is calling: the client type and version Nacos reads from ``User-Agent`` (``ClientInfo``).

Nacos 1.4.2 takes the agent from ``User-Agent``, or from ``Client-Version`` when ``User-Agent`` is empty
(``WebUtils.getUserAgent``), and reads ``<prefix>:v<version>`` from it. Two answers depend on it:

* ``instance/list`` gives grouped names (``group@@name`` in ``dom`` and in each host's ``serviceName``) only
  to the Java client 1.0.0 or later; every other agent gets bare names;
* ``PUT /instance`` from the Java client 1.0.0 or later must name an existing instance.

We also look at ``Client-Version`` when ``User-Agent`` is present but names no known client (a proxy or a
library may set its own ``User-Agent``), as the UDP push already did.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from cluster.http import Request

__all__ = ["ClientInfo", "ClientType", "client_agent", "client_info", "parse_version"]


class ClientType(enum.Enum):
    """Nacos's client types (``ClientInfo.ClientType``)."""

    JAVA = "Nacos-Java-Client"
    DNS = "Nacos-DNS"
    C = "Nacos-C-Client"
    JAVA_SDK = "Nacos-SDK-Java"
    NACOS_SERVER = "Nacos-Server"
    TENGINE = "unit-nginx"
    CPP = "vip-client4cpp"
    GO = "Nacos-Go-Client"
    CSHARP = "Nacos-CSharp-Client"
    UNKNOWN = ""


_VERSION_SPLIT = re.compile(r"[-_./;:]")
_LEADING_DIGITS = re.compile(r"\d*")


def parse_version(text: str) -> tuple[int, int, int]:
    """Jackson's ``VersionUtil.parseVersion``: the leading digits of the first three parts (0 when none)."""
    parts = _VERSION_SPLIT.split(text.strip())[:3]
    numbers = [int(digits) if (digits := _LEADING_DIGITS.match(part).group()) else 0  # type: ignore[union-attr]
               for part in parts]
    while len(numbers) < 3:
        numbers.append(0)
    return numbers[0], numbers[1], numbers[2]


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A client's type and version (``0.0.0`` when unknown)."""

    type: ClientType
    version: tuple[int, int, int]

    def java_at_least(self, version: tuple[int, int, int]) -> bool:
        """The Java client, at ``version`` or later."""
        return self.type is ClientType.JAVA and self.version >= version

    @property
    def wants_grouped_names(self) -> bool:
        """Only the Java client 1.0.0 and later reads ``group@@name`` in list answers."""
        return self.java_at_least((1, 0, 0))


UNKNOWN = ClientInfo(ClientType.UNKNOWN, (0, 0, 0))


def client_info(agent: str) -> ClientInfo:
    """Parse an agent string as Nacos does (prefix match, then the text after ``:v``)."""
    for kind in ClientType:
        if kind is not ClientType.UNKNOWN and agent.startswith(kind.value):
            marker = agent.find(":v")
            return ClientInfo(kind, parse_version(agent[marker + 2 :]))  # no ":v": Nacos reads from index 1
    return UNKNOWN


def client_agent(request: Request) -> ClientInfo:
    """The caller's :class:`ClientInfo`: ``User-Agent``, else (empty or unknown) ``Client-Version``."""
    info = client_info(request.headers.get("user-agent", ""))
    if info.type is ClientType.UNKNOWN:
        info = client_info(request.headers.get("client-version", ""))
    return info
