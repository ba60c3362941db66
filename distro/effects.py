"""Effects: what the core asks its runtime to do. The core never performs IO itself."""

from __future__ import annotations

from dataclasses import dataclass

from distro.messages import Message
from distro.model import ServiceKey
from distro.requests import Result
from distro.views import ServiceView


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver ``message`` to peer ``target``. A failure must come back as ``handle_send_failed``."""

    target: str
    message: Message


@dataclass(frozen=True, slots=True)
class ClientReply:
    """Answer the client request ``request_id`` that the core had left pending (it was forwarded)."""

    request_id: int
    result: Result


@dataclass(frozen=True, slots=True)
class ServiceChanged:
    """The read view of ``key`` changed: push it to subscribers and wake watchers."""

    key: ServiceKey
    view: ServiceView


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """Something an operator wants in the log: ``ready``, ``peer_up``, ``peer_down``, ``ownership_changed``."""

    kind: str
    detail: str


Effect = Send | ClientReply | ServiceChanged | LifecycleEvent
