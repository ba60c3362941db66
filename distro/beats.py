"""Beats answered from the replica, and the beat receipts that renew them on their owners. Pure.

Every node holds a replica of every instance, so a node that does not own a key can answer a beat for it
without a round trip to the owner, and tell the owner later, with the other beats of the same moment, in
one message. The rule (docs/design.md, "Beats answered from the replica"):

* **Answered here** only when the replica holds the instance **healthy**, bound to no gRPC connection, and
  its own heartbeat timeout and expiry are each at least three receipt intervals: the answer is the one the
  owner would give (``10200`` with the instance's beat interval). The beat becomes a *receipt* for its
  owner.
* **Forwarded** to the owner, as before, in every other case: an instance the replica lacks (it may be
  registered a moment ago and not replicated yet, deregistered a moment ago, or gone: the owner decides
  between ``OK`` within ``deregister_grace_ms``, ``20404``, and registering a full beat's instance); an
  unhealthy one (the owner must write it healthy now, not a receipt interval later); one bound to a gRPC
  connection (the owner judges whose it is).
* **Receipts** are kept per instance (a second beat before the flush adds nothing) and sent every
  ``beat_receipt_interval_ms`` as ``Renew`` items with an empty connection id, one message per owner as
  computed at sending time (so receipts follow an ownership change to the new owner), at once when they
  reach ``max_beat_receipt_bytes``.
* **The owner** restarts the clock of each live instance it owns (healthy again if it had been marked
  unhealthy meanwhile). It never registers anything from a receipt: a receipt for an instance it expired
  or that was deregistered is dropped, and the owner sends the sender its tombstone, so that the sender's
  stale replica no longer answers for it and the client's next beat gets ``20404`` from the owner.

The owner's clock restarts when the receipt arrives, at most one receipt interval plus a network delay after
the beat: no instance that beats is expired, and one that stopped beating outlives the expiry by at most that.
"""

from __future__ import annotations

from distro.config import DistroConfig
from distro.model import Instance, ServiceKey
from distro.requests import CODE_OK, Beat, Result

__all__ = ["RECEIPT_OVERHEAD_BYTES", "BeatReceipts", "answer_from_replica"]

RECEIPT_OVERHEAD_BYTES = 64
"""What one receipt costs beyond its strings (dict slot, tuple, key object), for the byte bound."""
SAFETY_FACTOR = 3
"""An instance's heartbeat timeout and expiry must each be at least this many receipt intervals for its
beats to be answered here."""


def answer_from_replica(beat: Beat, replica: Instance | None, config: DistroConfig) -> Result | None:
    """The answer a node that does not own ``beat.key`` gives from its replica, or None: forward the beat."""
    interval_ms = config.beat_receipt_interval_ms
    if interval_ms <= 0 or replica is None or not replica.healthy or replica.connection:
        return None
    margin_ms = SAFETY_FACTOR * interval_ms
    if replica.heartbeat_timeout_ms(config.heartbeat_timeout_ms) < margin_ms:
        return None
    if replica.expire_ms(config.instance_expire_ms) < margin_ms:
        return None
    return Result(
        200,
        {
            "clientBeatInterval": replica.beat_interval_ms(config.client_beat_interval_ms),
            "code": CODE_OK,
            "lightBeatEnabled": True,
        },
    )


def receipt_bytes(key: ServiceKey, entry_id: str) -> int:
    """What one receipt is counted as against ``max_beat_receipt_bytes``."""
    return len(key.namespace) + len(key.group) + len(key.service) + len(entry_id) + RECEIPT_OVERHEAD_BYTES


class BeatReceipts:
    """Beats this node answered for instances it does not own, waiting to go to their owners.

    One receipt per instance (the latest beat is all the owner needs); sent ``interval_ms`` after the first
    one arrived, or at once when they reach ``max_bytes`` (:attr:`full`).
    """

    __slots__ = ("_bytes", "_first_ms", "_interval_ms", "_max_bytes", "_receipts", "answered", "sent_items")

    def __init__(self, interval_ms: int, max_bytes: int) -> None:
        self._interval_ms = interval_ms
        self._max_bytes = max_bytes
        self._receipts: dict[tuple[ServiceKey, str], None] = {}
        self._bytes = 0
        self._first_ms = 0
        self.answered = 0  # beats answered here (counter)
        self.sent_items = 0  # receipts taken for sending (counter)

    def add(self, key: ServiceKey, entry_id: str, now_ms: int) -> None:
        """A beat for ``(key, entry_id)`` was answered here."""
        self.answered += 1
        receipts = self._receipts
        if (key, entry_id) in receipts:
            return
        if not receipts:
            self._first_ms = now_ms
        receipts[(key, entry_id)] = None
        self._bytes += receipt_bytes(key, entry_id)

    @property
    def full(self) -> bool:
        """The receipts reached the byte bound: send them now."""
        return self._bytes >= self._max_bytes

    @property
    def bytes(self) -> int:
        """Bytes the waiting receipts are counted as."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._receipts)

    def next_send_ms(self) -> int | None:
        """When the waiting receipts are due (None: none wait)."""
        return self._first_ms + self._interval_ms if self._receipts else None

    def take(self) -> list[tuple[ServiceKey, str]]:
        """Every waiting receipt, oldest first; none wait afterwards."""
        taken = list(self._receipts)
        self._receipts = {}
        self._bytes = 0
        self.sent_items += len(taken)
        return taken
