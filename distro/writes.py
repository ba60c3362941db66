"""Client writes: what each request means on the node that owns its key, with Nacos's checks and texts.

A request becomes zero or more entry writes (an instance, a service's metadata, or a tombstone) and beats
of heartbeat clocks; how a write is stored, replicated and notified is the node's rule, so this module
calls back into it (:data:`Write`, :data:`Touch`). A request the registry refuses raises
:class:`~distro.errors.ValidationError` inside and comes back as its :class:`~distro.requests.Result`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distro.config import DistroConfig
from distro.datum import IMPLICIT_ENTRY_ID, META_ENTRY_ID, EntryValue
from distro.errors import ValidationError
from distro.model import (
    Instance,
    ServiceKey,
    ServiceMeta,
    instance_entry_id,
    make_instance,
    validate_timing_metadata,
)
from distro.requests import (
    CODE_OK,
    CODE_RESOURCE_NOT_FOUND,
    OK,
    Beat,
    ClientRequest,
    CreateService,
    DeleteService,
    Deregister,
    Register,
    Result,
    UpdateInstance,
    UpdateService,
)
from distro.sharing import share_metadata, share_weight
from distro.store import DatumStore

__all__ = ["MAX_REMEMBERED_DEREGISTRATIONS", "ClientWrites", "Touch", "Write"]

MAX_REMEMBERED_DEREGISTRATIONS = 100_000
"""Most recent deregistrations a node remembers for :meth:`ClientWrites.recently_deregistered`."""


Write = Callable[[ServiceKey, str, EntryValue, int], None]
"""``write(key, entry_id, value, now_ms)``: store a new local version of an entry (value None: a tombstone),
replicate it and notify. The node's rule."""
Touch = Callable[[ServiceKey, str, int], None]
"""``touch(key, entry_id, now_ms)``: a beat for an instance restarts its heartbeat clock (when owned)."""
Ownership = Callable[[], tuple[int, Callable[[], int]]]
"""``ownership()``: the number of live members, and a function counting the stored keys this node owns."""


class ClientWrites:
    """Applies client requests to a node's store through the node's ``write`` and ``touch``."""

    __slots__ = ("_config", "_deregistered", "_ownership", "_store", "_touch", "_write")

    def __init__(
        self, config: DistroConfig, store: DatumStore, write: Write, touch: Touch, ownership: Ownership
    ) -> None:
        self._config = config
        self._store = store
        self._write = write
        self._touch = touch
        self._ownership = ownership
        # (key, entry id) -> when a client deregistered it here, oldest first (see _beat); bounded
        self._deregistered: dict[tuple[ServiceKey, str], int] = {}

    def apply(self, request: ClientRequest, now_ms: int) -> Result:
        """Apply one request here; a refusal comes back as its 4xx :class:`Result`."""
        try:
            return self._apply(request, now_ms)
        except ValidationError as exc:
            return Result(exc.status, exc.message)

    def _apply(self, request: ClientRequest, now_ms: int) -> Result:
        key = request.key
        store = self._store
        write = self._write
        if isinstance(request, Register):
            return self._register(key, request.instance, now_ms)
        if isinstance(request, Deregister):
            entry_id = instance_entry_id(request.cluster, request.ip, request.port)
            live = store.live_instance(key, entry_id)
            # A connection's deregistration removes only what still belongs to that connection.
            if live is not None and request.connection in (None, live.connection):
                write(key, entry_id, None, now_ms)
                self._remember_deregistration(key, entry_id, now_ms)
            return OK
        if isinstance(request, Beat):
            return self._beat(request, now_ms)
        if isinstance(request, UpdateInstance):
            return self._update(request, now_ms)
        if isinstance(request, CreateService):
            if store.service_exists(key):
                raise ValidationError(f"specified service already exists, serviceName : {key.grouped_name}")
            self._check_service_room(key)
            write(key, META_ENTRY_ID, request.meta, now_ms)
            return OK
        if isinstance(request, UpdateService):
            if not store.service_exists(key):
                raise ValidationError(f"service {key.grouped_name} not found!")
            write(key, META_ENTRY_ID, request.meta, now_ms)
            return OK
        if isinstance(request, DeleteService):
            return self._delete_service(key, now_ms)
        raise ValidationError(f"unsupported request {type(request).__name__}")  # pragma: no cover

    def _remember_deregistration(self, key: ServiceKey, entry_id: str, now_ms: int) -> None:
        """Keep when (key, entry) was deregistered, for ``deregister_grace_ms``; at most
        ``MAX_REMEMBERED_DEREGISTRATIONS`` of them (the oldest are forgotten first)."""
        remembered = self._deregistered
        remembered.pop((key, entry_id), None)
        remembered[(key, entry_id)] = now_ms
        horizon = now_ms - self._config.deregister_grace_ms
        while remembered:
            oldest = next(iter(remembered.items()))
            if oldest[1] >= horizon and len(remembered) <= MAX_REMEMBERED_DEREGISTRATIONS:
                break
            del remembered[oldest[0]]

    def recently_deregistered(self, key: ServiceKey, entry_id: str, now_ms: int) -> bool:
        """Whether a client deregistered this instance here within ``deregister_grace_ms``."""
        when = self._deregistered.get((key, entry_id))
        return when is not None and now_ms - when <= self._config.deregister_grace_ms

    def _delete_service(self, key: ServiceKey, now_ms: int) -> Result:
        """Remove an empty service: its settings, its clusters' settings and its implicit marker become
        tombstones.

        A service that still has instances is refused, as Nacos 2 does: its clients would register the
        instances again within one beat, bringing the service back without its settings.
        """
        store = self._store
        if not store.service_exists(key):
            raise ValidationError(f"specified service not exist, serviceName : {key.grouped_name}")
        if store.live_instance_count(key):
            raise ValidationError(
                f"Service {key.grouped_name} is not empty, can't be delete. Please unregister instance first"
            )
        for entry_id, entry in store.items(key):
            if entry.value is not None and entry_id.startswith("#"):  # #meta, #implicit, #cluster/<name>
                self._write(key, entry_id, None, now_ms)
        return OK

    def _register(self, key: ServiceKey, instance: Instance, now_ms: int) -> Result:
        entry_id = instance.entry_id
        self._deregistered.pop((key, entry_id), None)
        existing = self._store.live_instance(key, entry_id)
        if existing is not None and instance.assigned_id != existing.assigned_id:
            instance = instance.replace(assigned_id=existing.assigned_id)  # Nacos keeps an instance's id
        if existing is None:
            if instance.wants_snowflake_id and not instance.assigned_id:
                instance = instance.replace(assigned_id=self._snowflake_id(key))
            limit = self._config.max_instances_per_service
            self._check_service_room(key)
            if self._store.live_instance_count(key) >= limit:
                raise ValidationError(
                    f"service {key.grouped_name} already has {limit} "
                    "instances, the most one service may hold"
                )
            if self._store.meta(key) is None and self._store.live_value(key, IMPLICIT_ENTRY_ID) is None:
                # A service created by a registration outlives its last instance until the empty-service
                # cleaner removes it (distro/cleaner.py); this marker keeps it meanwhile.
                self._write(key, IMPLICIT_ENTRY_ID, ServiceMeta(implicit=True), now_ms)
            self._write(key, entry_id, instance, now_ms)
        elif existing != instance:
            self._write(key, entry_id, instance, now_ms)
        self._touch(key, entry_id, now_ms)
        return OK

    def _snowflake_id(self, key: ServiceKey) -> str:
        """Nacos's ``snowflake`` instance id: the smallest non-negative integer no instance of the service
        holds as its id (O(instances of the service), only when such an instance is registered)."""
        datum = self._store.datum(key) or {}
        taken = {entry.value.assigned_id for entry in datum.values() if isinstance(entry.value, Instance)}
        number = 0
        while str(number) in taken:
            number += 1
        return str(number)

    def _check_service_room(self, key: ServiceKey) -> None:
        """Refuse a client write that would add a service beyond ``max_services`` (replication never is).

        Owners that create services at the same moment do not see each other's until they replicate, so
        the count of known keys alone lets ``n - 1`` owners' worth of creations past the bound. Each of
        the ``n`` live members therefore also keeps the keys it owns within its share, ``max_services // n``
        (at least 1): with every member agreeing on the live set, the keys of all owners together stay
        within ``max_services``.
        """
        store = self._store
        if key in store:
            return
        limit = self._config.max_services
        if len(store) >= limit:
            raise ValidationError(
                f"cannot create service {key.grouped_name}: this registry already holds {limit} services, "
                "the most it may hold (max_services)"
            )
        members, owned_keys = self._ownership()
        share = max(1, limit // max(1, members))
        if len(store) >= share and owned_keys() >= share:
            raise ValidationError(
                f"cannot create service {key.grouped_name}: this node owns {share} services, its share of "
                f"max_services ({limit} over {members} live members)"
            )

    def _update(self, request: UpdateInstance, now_ms: int) -> Result:
        key = request.key
        entry_id = instance_entry_id(request.cluster, request.ip, request.port)
        existing = self._store.live_instance(key, entry_id)
        if existing is None:
            if request.must_exist:
                raise ValidationError(
                    f"instance not exist: {request.ip}:{request.port}:unknown:{request.cluster}"
                )
            base = make_instance(request.ip, request.port, cluster=request.cluster)
        else:
            base = existing
        changes: dict[str, Any] = dict(request.changes)
        if "metadata" in changes:
            validate_timing_metadata(changes["metadata"])
            changes["metadata"] = share_metadata(changes["metadata"])
        if "weight" in changes:
            changes["weight"] = share_weight(changes["weight"])
        updated = base.replace(**changes)
        return self._register(key, updated, now_ms)

    def _beat(self, request: Beat, now_ms: int) -> Result:
        key = request.key
        entry_id = request.entry_id
        existing = self._store.live_instance(key, entry_id)
        interval = self._config.client_beat_interval_ms
        if existing is None:
            if self.recently_deregistered(key, entry_id, now_ms):
                # A beat that was in flight when its client deregistered: asking for re-registration
                # (20404), or re-registering from the beat's body, would bring back what was just removed.
                return Result(200, {"clientBeatInterval": interval, "code": CODE_OK, "lightBeatEnabled": True})
            if request.instance is None:
                return Result(200, {"clientBeatInterval": interval, "code": CODE_RESOURCE_NOT_FOUND})
            self._register(key, request.instance.with_health(True), now_ms)
            existing = self._store.live_instance(key, entry_id)
            assert existing is not None
        else:
            self._touch(key, entry_id, now_ms)
            if not existing.healthy:
                self._write(key, entry_id, existing.with_health(True), now_ms)
        return Result(
            200,
            {
                "clientBeatInterval": existing.beat_interval_ms(interval),
                "code": CODE_OK,
                "lightBeatEnabled": True,
            },
        )
