"""ConnectionTable: the gRPC client connections a node holds and the instances bound to them. Pure.

Nacos 2.x clients register ephemeral instances over a long-lived connection and send no heartbeats: an
instance lives as long as the connection that registered it. The node that holds a connection (its
*holder*) keeps this table; the instances themselves are ordinary versioned entries on their owners,
marked with the connection id (:attr:`~distro.model.Instance.connection`).

Rules (docs/protocol.md, "gRPC connections"):

* **One instance per service per connection**, as in Nacos: registering again on the same connection
  replaces the connection's instance of that service; a batch registration replaces them with the batch.
* **Bind before the write.** A registration is bound here first, then its :class:`~distro.requests.Register`
  goes to the owner, so a connection that closes while its write is in flight still deregisters it.
* **A clean close, or a connection that fails detection, deregisters at once**: :meth:`close` returns one
  :class:`~distro.requests.Deregister` per bound instance, each conditional on the entry still belonging to
  this connection (a client that already moved to another node keeps its instance).
* **Detection** (Nacos's timings are the defaults): a connection with no inbound traffic for
  ``probe_after_idle_ms`` is probed; one that stays silent ``give_up_after_ms`` after the probe is given up.
  Any inbound message counts as traffic and answers a probe.
* **Renewal.** The holder renews its connections' instances on their owners (see
  :meth:`~distro.node.DistroNode` and the ``Renew`` peer message); this table says what to renew. An
  instance stays bound while its connection is open, even when another connection or a v1 client takes
  its entry over: if that entry goes away, the connection's next renewal registers it again.

Everything is bounded: ``max_bound_per_connection`` instances per connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from hashlib import blake2b

from distro.config import DistroConfig
from distro.messages import RenewItem, TakenItem
from distro.model import Instance, ServiceKey, ValidationError
from distro.requests import ClientRequest, Deregister, Register

NEVER = -(2**62)


@dataclass(frozen=True, slots=True)
class ConnectionTimings:
    """Detection knobs (milliseconds) and the per-connection bound."""

    probe_after_idle_ms: int = 20_000
    give_up_after_ms: int = 5_000
    check_interval_ms: int = 3_000
    max_bound_per_connection: int = 10_000

    @classmethod
    def of(cls, config: DistroConfig) -> ConnectionTimings:
        """The timings a node's configuration sets."""
        return cls(
            config.connection_probe_after_idle_ms,
            config.connection_give_up_after_ms,
            config.connection_check_interval_ms,
            config.max_instances_per_connection,
        )

    def __post_init__(self) -> None:
        if min(self.probe_after_idle_ms, self.give_up_after_ms, self.check_interval_ms) <= 0:
            raise ValueError("connection timings must be positive")
        if self.max_bound_per_connection < 1:
            raise ValueError("max_bound_per_connection must be positive")


@dataclass(slots=True)
class _Connection:
    connection_id: str
    last_active_ms: int
    probe_sent_ms: int = NEVER
    bound: dict[ServiceKey, dict[str, Instance]] = field(default_factory=dict)
    bound_ms: dict[tuple[ServiceKey, str], int] = field(default_factory=dict)  # when each was (re)registered
    count: int = 0
    # The last instance registered and its copy marked with this connection: a client registers the same
    # (immutable) instance in service after service, and the front door hands the same object again.
    last_marked: tuple[Instance, Instance] | None = None


@dataclass(frozen=True, slots=True)
class Detection:
    """What a detection round decided: connections to probe now, and connections to give up."""

    probe: tuple[str, ...]
    give_up: tuple[str, ...]


def _deregister(key: ServiceKey, inst: Instance, connection_id: str) -> Deregister:
    return Deregister(key, inst.cluster, inst.ip, inst.port, connection=connection_id)


class ConnectionTable:
    """The connections held by one node, with the instances bound to each."""

    def __init__(self, timings: ConnectionTimings | None = None) -> None:
        self.timings = timings or ConnectionTimings()
        self._conns: dict[str, _Connection] = {}
        self._bound_total = 0

    # -- life -------------------------------------------------------------------------------------
    def open(self, connection_id: str, now_ms: int) -> None:
        """A connection was set up (idempotent)."""
        if connection_id not in self._conns:
            self._conns[connection_id] = _Connection(connection_id, now_ms)

    def touch(self, connection_id: str, now_ms: int) -> None:
        """Inbound traffic on a connection: it is alive (this also answers a pending probe)."""
        conn = self._conns.get(connection_id)
        if conn is not None:
            conn.last_active_ms = max(conn.last_active_ms, now_ms)
            conn.probe_sent_ms = NEVER

    def close(self, connection_id: str) -> list[ClientRequest]:
        """The connection is gone: the deregistrations of everything bound to it."""
        conn = self._conns.pop(connection_id, None)
        if conn is None:
            return []
        self._bound_total -= conn.count
        return [
            _deregister(key, inst, connection_id) for key, by_id in conn.bound.items() for inst in by_id.values()
        ]

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._conns

    def __len__(self) -> int:
        return len(self._conns)

    # -- binding ----------------------------------------------------------------------------------
    def register(
        self, connection_id: str, key: ServiceKey, instances: tuple[Instance, ...], now_ms: int
    ) -> list[ClientRequest]:
        """Make ``instances`` this connection's instances of ``key`` (replacing any it had).

        Returns the writes to submit: deregistrations of replaced instances, then registrations (each
        instance marked with the connection id). Raises ValidationError for an unknown connection or
        past the per-connection bound.
        """
        conn = self._conns.get(connection_id)
        if conn is None:
            raise ValidationError("Connection is unregistered.")
        marked: dict[str, Instance] = {}
        for inst in instances:
            last = conn.last_marked
            if last is None or last[0] is not inst:
                last = conn.last_marked = (inst, inst.replace(connection=connection_id))
            marked[inst.entry_id] = last[1]
        if len(marked) == 1:
            single = self._register_one(conn, key, marked, now_ms)
            if single is not None:
                return single
        old = conn.bound.get(key, {})
        if conn.count - len(old) + len(marked) > self.timings.max_bound_per_connection:
            raise ValidationError(
                f"a connection may register at most {self.timings.max_bound_per_connection} instances"
            )
        requests: list[ClientRequest] = [
            _deregister(key, inst, connection_id) for entry_id, inst in old.items() if entry_id not in marked
        ]
        requests.extend(Register(key, inst) for inst in marked.values())
        self._set(conn, key, marked)
        for entry_id in marked:
            conn.bound_ms[(key, entry_id)] = now_ms
        return requests

    def _register_one(self, conn: _Connection, key: ServiceKey, marked: dict[str, Instance],
                      now_ms: int) -> list[ClientRequest] | None:
        """:meth:`register`'s usual case, with nothing to deregister: one instance, and the connection held
        none of ``key`` or that same entry (registered again). None: take the general path."""
        old = conn.bound.get(key)
        if old is not None and (len(old) != 1 or old.keys() != marked.keys()):
            return None
        if old is None:
            if conn.count + 1 > self.timings.max_bound_per_connection:
                return None  # the general path raises
            conn.count += 1
            self._bound_total += 1
        conn.bound[key] = marked
        for entry_id, inst in marked.items():
            conn.bound_ms[(key, entry_id)] = now_ms
            return [Register(key, inst)]
        return None

    def deregister(self, connection_id: str, key: ServiceKey, instance: Instance) -> list[ClientRequest]:
        """Unbind one instance (matched by cluster, ip and port); its deregistration, conditional on the
        connection, is returned even when it was not bound here (the owner then ignores it)."""
        conn = self._conns.get(connection_id)
        if conn is None:
            raise ValidationError("Connection is unregistered.")
        by_id = dict(conn.bound.get(key, {}))
        by_id.pop(instance.entry_id, None)
        self._set(conn, key, by_id)
        return [_deregister(key, instance, connection_id)]

    def unbind(self, connection_id: str, key: ServiceKey, entry_id: str) -> None:
        """Forget one binding without a write (its entry now belongs to another connection or client)."""
        conn = self._conns.get(connection_id)
        if conn is not None and entry_id in conn.bound.get(key, {}):
            by_id = dict(conn.bound[key])
            del by_id[entry_id]
            self._set(conn, key, by_id)

    def _set(self, conn: _Connection, key: ServiceKey, by_id: dict[str, Instance]) -> None:
        old = conn.bound.pop(key, {})
        for entry_id in old.keys() - by_id.keys():
            conn.bound_ms.pop((key, entry_id), None)
        if by_id:
            conn.bound[key] = by_id
        delta = len(by_id) - len(old)
        conn.count += delta
        self._bound_total += delta

    def bound(self, connection_id: str, key: ServiceKey, entry_id: str) -> Instance | None:
        """The instance bound under that entry, or None."""
        conn = self._conns.get(connection_id)
        return None if conn is None else conn.bound.get(key, {}).get(entry_id)

    def instances(self, connection_id: str | None = None) -> Iterator[tuple[str, ServiceKey, Instance]]:
        """``(connection id, key, instance)`` of every binding (of one connection, or all)."""
        conns = self._conns.values() if connection_id is None else [c for c in [self._conns.get(connection_id)] if c]
        for conn in conns:
            for key, by_id in conn.bound.items():
                for inst in by_id.values():
                    yield conn.connection_id, key, inst

    @property
    def bound_count(self) -> int:
        """Instances bound, all connections together."""
        return self._bound_total

    # -- renewal ----------------------------------------------------------------------------------
    def renewals(self, owner_of: Callable[[ServiceKey], str | None]) -> dict[str, list[RenewItem]]:
        """Every bound instance, grouped by the owner of its key now (keys without an owner are left out)."""
        by_owner: dict[str, list[RenewItem]] = {}
        owners: dict[ServiceKey, str | None] = {}
        for conn in self._conns.values():
            for key, by_id in conn.bound.items():
                if key not in owners:
                    owners[key] = owner_of(key)
                owner = owners[key]
                if owner is None:
                    continue
                items = by_owner.setdefault(owner, [])
                items.extend((key, entry_id, conn.connection_id) for entry_id in by_id)
        return by_owner

    def on_renew_reply(
        self, missing: tuple[RenewItem, ...], taken: tuple[TakenItem, ...], now_ms: int
    ) -> list[ClientRequest]:
        """An owner's verdict. What is ``missing`` and still bound is registered again. What was ``taken``
        *before* this connection registered it means this connection's own registration has not landed (it
        was delayed or is being retried): register it again rather than drop a live client's instance.
        What was taken *after* stays bound, with no write: another connection (or a v1 client) holds the
        entry for now, but this connection is open and registered it, so when the entry goes away (the other
        writer deregisters, closes or expires) the next renewal finds it ``missing`` and registers it again.
        (Forgetting it lost a connected client's instance for good: a registration that had timed out on a
        slow node landed late, took the entry, and expired with that node's dead connection. Found by
        scripts/chaos.) The connection's close deregisters it conditionally, which leaves another's entry be."""
        again = list(missing)
        for key, entry_id, connection_id, version_ms in taken:
            conn = self._conns.get(connection_id)
            if conn is None:
                continue
            bound_ms = conn.bound_ms.get((key, entry_id))
            if bound_ms is not None and version_ms < bound_ms:
                again.append((key, entry_id, connection_id))
        writes: list[ClientRequest] = []
        for key, entry_id, connection_id in again:
            inst = self.bound(connection_id, key, entry_id)
            if inst is not None:
                writes.append(Register(key, inst))
                self._conns[connection_id].bound_ms[(key, entry_id)] = now_ms
        return writes

    # -- detection --------------------------------------------------------------------------------
    def detect(self, now_ms: int) -> Detection:
        """Connections to probe (idle ``probe_after_idle_ms``) and to give up (probe unanswered)."""
        t = self.timings
        probe: list[str] = []
        give_up: list[str] = []
        for conn in self._conns.values():
            if conn.probe_sent_ms != NEVER:
                if now_ms - conn.probe_sent_ms >= t.give_up_after_ms:
                    give_up.append(conn.connection_id)
            elif now_ms - conn.last_active_ms >= t.probe_after_idle_ms:
                conn.probe_sent_ms = now_ms
                probe.append(conn.connection_id)
        return Detection(tuple(probe), tuple(give_up))


def node_tag(node_id: str) -> str:
    """A short, stable tag of a node id (6 hex digits), the last part of the ids of its connections."""
    return blake2b(node_id.encode("utf-8", "surrogatepass"), digest_size=3).hexdigest()


def new_connection_id(holder: str, now_ms: int, remote_ip: str, remote_port: int) -> str:
    """A connection id in Nacos's form (``<ms>_<client ip>_<client port>``) plus the holder's tag, so that
    ids never collide across nodes and an owner can tell which node holds a connection (:func:`held_by`)."""
    return f"{now_ms}_{remote_ip}_{remote_port}_{node_tag(holder)}"


def holder_tag(connection_id: str) -> str:
    """The :func:`node_tag` of the node that made ``connection_id`` (with :func:`new_connection_id`)."""
    return connection_id.rpartition("_")[2].partition(".")[0]


def made_at_ms(connection_id: str) -> int | None:
    """When the holder made ``connection_id`` (its clock; the first part of :func:`new_connection_id`'s form),
    or None for an id not of that form."""
    head = connection_id.partition("_")[0]
    return int(head) if head.isascii() and head.isdigit() and len(head) <= 18 else None


def held_by(connection_id: str, node_id: str) -> bool:
    """Whether ``connection_id`` was made by :func:`new_connection_id` on ``node_id``."""
    return holder_tag(connection_id) == node_tag(node_id)


def judge_renewal(
    item: RenewItem, owned: bool, live: Instance | None
) -> str:
    """What the owner does with one renewed instance: ``"touch"`` (restart its heartbeat clock),
    ``"missing"`` (it holds no such instance, or holds an orphan there: the renewing holder is alive, and
    registers it again, unmarked; an orphan, of this connection or of a dead one, never outweighs a live
    connection), ``"taken"`` (the entry belongs to another live connection or to a heartbeating client now)
    or ``"ignore"`` (this node does not own the key: the holder's view of ownership is behind, and its next
    renewal goes to the right owner)."""
    if not owned:
        return "ignore"
    if live is None or live.orphaned_ms:
        return "missing"
    return "touch" if live.connection == item[2] else "taken"


__all__ = [
    "ConnectionTable",
    "ConnectionTimings",
    "Detection",
    "held_by",
    "holder_tag",
    "judge_renewal",
    "made_at_ms",
    "new_connection_id",
    "node_tag",
]
