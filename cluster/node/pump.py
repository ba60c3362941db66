"""NodeRuntime: the trio shell around one :class:`~distro.node.DistroNode`.

It feeds the core its inputs (client writes, peer messages, link events, timer ticks, disk progress) and
carries the effects out (peer sends, client replies, view changes, lifecycle log lines, entries to persist). It makes no protocol
decision of its own.

Concurrency: trio runs one task at a time and the core never awaits, so any task may call into the core
synchronously and nobody ever sees it half-updated (design.md §3); no locks. After every input the
runtime drains the effects at once. One timer task sleeps until the core's next deadline and ticks it;
an input that brings the deadline closer wakes it. Time is ``trio.current_time()`` based, so trio's
``MockClock`` drives a whole runtime in tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import outcome
import trio

from cluster.loglimit import RateLimitedLog
from cluster.node import gctune
from distro.config import DistroConfig
from distro.effects import (
    ClientReply,
    Effect,
    ForgetDeletion,
    LifecycleEvent,
    LifecycleKind,
    Persist,
    Send,
    ServiceChanged,
    SettingChanged,
)
from distro.messages import Items, Message
from distro.model import ServiceKey
from distro.node import DistroNode
from distro.requests import Beat, ClientRequest, Result
from distro.views import ServiceView

__all__ = ["SNAPSHOT_BACKLOG_BYTES", "ChangeListener", "NodeRuntime", "PeerHandler", "PeerTransport", "SettingListener"]

log = logging.getLogger("distro.node")

ChangeListener = Callable[[ServiceKey, ServiceView], None]
SettingListener = Callable[[str, "str | None"], None]
"""Told ``(name, text)`` whenever a registry-wide setting changes here (``text`` None: removed)."""
PeerHandler = Callable[[str, Message], None]
"""Answers a peer message the core leaves to the runtime: ``(sender node id, message)``."""


class PeerTransport(Protocol):
    """What the runtime needs from a peer transport (``cluster.node.peerlink.PeerLinks`` or an in-memory one)."""

    def send(self, node_id: str, message: Message) -> None:
        """Queue a message for a peer; failures come back through the runtime's ``on_send_failed``."""


SNAPSHOT_BACKLOG_BYTES = 8 * 1024 * 1024
"""A snapshot's slices to a peer wait while more than this is queued for it (the send queue's bound is 64 MiB)."""

_OWNER_SILENT = Result(503, "server is busy: the owner of this service did not answer, please try again later!")


class _Waiter:
    """A client write waiting for its answer (a forward's reply, or a write held until on disk): the parked
    task (or the callback of :meth:`NodeRuntime.submit_then`), when to give up on it (trio seconds), and the
    answer once it came."""

    __slots__ = ("callback", "deadline_s", "parked", "result", "task")

    def __init__(self, task: trio.lowlevel.Task | None, deadline_s: float) -> None:
        self.task = task
        self.deadline_s = deadline_s
        self.parked = False  # the task is inside wait_task_rescheduled (else it is still running submit)
        self.result: Result | None = None
        self.callback: Callable[[Result], None] | None = None


class NodeRuntime:
    """Drives one DistroNode from trio. Create it, then ``await nursery.start(runtime.run)``."""

    def __init__(self, node_id: str, config: DistroConfig, *, address: str, epoch_ms: int | None = None) -> None:
        self._trio_start = trio.current_time()
        self._epoch_ms = int(time.time() * 1000) if epoch_ms is None else epoch_ms
        self.node = DistroNode(node_id, config, self.now_ms(), address=address)
        self.transport: PeerTransport | None = None
        # Where Persist and ForgetDeletion effects go (the node's DiskWriter); set whenever the core runs with
        # durable_writes.
        self.persist: Callable[[Persist | ForgetDeletion], None] | None = None
        self._request_seq = 0
        # Request id -> its waiter; in submission order, hence in deadline order (one wait for all).
        self._waiting: dict[int, _Waiter] = {}
        self._failed: list[tuple[str, Message]] = []
        # Effects carried out: one that fails (a bug) is counted and logged, rate-limited (_carry_out); a
        # Persist or ForgetDeletion that failed waits here to be handed to the disk writer again.
        self.effect_errors_total = 0
        self._effect_errors_log = RateLimitedLog(log, "carrying out an effect failed")
        # A broken listener fails at every change: its traceback once, then at most a line a minute.
        self._change_listener_log = RateLimitedLog(log, "change listener failed")
        self._setting_listener_log = RateLimitedLog(log, "setting listener failed")
        self._unsaved: list[Persist | ForgetDeletion] = []
        self._dispatching = False
        self._batching = False  # inside batch(): inputs leave their effects queued until it ends
        self._batched_input = False  # an input came during batch()
        self._wake = trio.Event()
        self._scheduled_ms: int | None = None
        self._change_events: dict[ServiceKey, trio.Event] = {}
        self.change_listeners: list[ChangeListener] = []
        # Registry-wide settings (PutSetting; e.g. switches): told when one changes, loaded, or replicated.
        self.setting_listeners: list[SettingListener] = []
        self.peer_handlers: dict[type, PeerHandler] = {}
        self.ready_event = trio.Event()
        self.forward_wait_ms = 2 * config.forward_timeout_ms + 1000

    # -- time -------------------------------------------------------------------------------------
    def now_ms(self) -> int:
        """Wall-clock milliseconds, advanced by trio's clock (so MockClock drives it in tests)."""
        return self._epoch_ms + int((trio.current_time() - self._trio_start) * 1000)

    # -- inputs -----------------------------------------------------------------------------------
    async def submit(self, request: ClientRequest) -> Result:
        """Apply a client write (here, or at its owner) and wait for the answer."""
        # The task parks until its answer comes (ClientReply) or, should the core never answer, until
        # forward_wait_ms has passed (the timer task gives up on it): no Event or cancel scope per write.
        request_id, outcome = self._begin(request, trio.lowlevel.current_task())
        if not isinstance(outcome, _Waiter):
            return outcome
        waiter = outcome
        if waiter.result is None:
            waiter.parked = True

            def abort(_: object) -> trio.lowlevel.Abort:  # cancelled (its client went away): forget it
                self._waiting.pop(request_id, None)
                return trio.lowlevel.Abort.SUCCEEDED

            answer: Result = await trio.lowlevel.wait_task_rescheduled(abort)
            return answer
        return waiter.result

    def submit_then(self, request: ClientRequest, on_result: Callable[[Result], None]) -> Result | None:
        """:meth:`submit` without a task: the answer when it is known at once (this node owns the service),
        else None and ``on_result(answer)`` later, called from whichever task delivers it (the peer link
        that brought the owner's reply, or the timer that gives up after ``forward_wait_ms``). The gRPC
        front door answers its writes this way, with no task per call. ``on_result`` must not raise."""
        _, outcome = self._begin(request, None)
        if not isinstance(outcome, _Waiter):
            return outcome
        if outcome.result is None:
            outcome.callback = on_result
        return outcome.result

    def beat_now(self, beat: Beat) -> Result | None:
        """The answer to a beat when this node has it at once (:meth:`DistroNode.beat_now`), else None
        with nothing done: :meth:`submit` it."""
        result = self.node.beat_now(beat, self.now_ms())
        if result is not None:
            self._after_input()
        return result

    def _begin(self, request: ClientRequest, task: trio.lowlevel.Task | None) -> tuple[int, Result | _Waiter]:
        """Hand a client write to the core: its answer when known at once, else the waiter now registered
        for it (``task`` parks on it, or None for a callback), which gives up after ``forward_wait_ms``."""
        self._request_seq += 1
        request_id = self._request_seq
        result = self.node.handle_client(request_id, request, self.now_ms())
        if result is not None:
            self._after_input()
            return request_id, result
        waiter = _Waiter(task, trio.current_time() + self.forward_wait_ms / 1000)
        self._waiting[request_id] = waiter
        self._after_input()
        return request_id, waiter

    def on_message(self, sender: str, message: Message) -> None:
        """A decoded message from an authenticated peer (see :meth:`on_messages`)."""
        self.on_messages(sender, [message])

    def on_messages(self, sender: str, messages: list[Message]) -> None:
        """Decoded messages from an authenticated peer, in the order it sent them (one peer-link frame).

        The core hears every message (any message proves its sender alive), all at one ``now_ms``, and
        what they caused (replies, sends, views) is drained once after the last: a frame of forwarded
        writes costs one dispatch, not one each. A query that only the runtime can answer
        (``SubscribersQuery``: subscriptions live in the API's parts) also goes to the handler registered
        for its type in :attr:`peer_handlers`, after the core has heard the whole frame.
        """
        node = self.node
        now_ms = self.now_ms()
        for message in messages:
            node.handle_peer(sender, message, now_ms)
        self._after_input()
        handlers = self.peer_handlers
        for message in messages:
            handler = handlers.get(type(message))
            if handler is not None:
                try:
                    handler(sender, message)
                except Exception:  # a broken handler must not take the peer link down
                    log.exception("peer handler failed for %s from %s", type(message).__name__, sender)

    def on_connected(self, node_id: str, address: str) -> None:
        """An authenticated link to a peer came up."""
        self.node.peer_connected(node_id, address, self.now_ms())
        self._after_input()

    def load_persisted(self, items: Items) -> None:
        """What the data folder held at start; call before :meth:`run` (the node is not ready yet)."""
        self.node.load_persisted(items, self.now_ms())
        self._after_input()

    def persisted(self, seq: int) -> None:
        """The disk writer committed every ``Persist`` up to ``seq``: answers that waited for it go out."""
        self.node.persisted(seq, self.now_ms())
        self._after_input()

    def on_send_failed(self, node_id: str, message: Message) -> None:
        """The transport could not deliver a message."""
        self._failed.append((node_id, message))
        if not self._dispatching:
            self._after_input()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Inputs within leave their effects queued; they are carried out once when it ends: a batch of
        writes submitted together (the HTTP keep-alive lane's step, every ready connection served in it)
        costs one dispatch and one deadline check instead of one each. Answers known at once (the owner's)
        are returned as usual; peer sends, view changes and the timer's wake-up wait for the end, which
        comes before anything else runs (no await within). Nested batches are one."""
        if self._batching:
            yield
            return
        self._batching = True
        try:
            yield
        finally:
            self._batching = False
            if self._batched_input:
                self._batched_input = False
                self._after_input()

    # -- effects ----------------------------------------------------------------------------------
    def _after_input(self) -> None:
        if self._batching:
            self._batched_input = True
            return
        self._dispatch()
        deadline = self.node.next_deadline_ms()
        if self._scheduled_ms is None or deadline < self._scheduled_ms:
            self._wake.set()

    def _dispatch(self) -> None:
        if self._dispatching:
            return
        self._dispatching = True
        try:
            if self._unsaved:  # Persists a failure kept from the disk writer: handed over again first
                unsaved, self._unsaved = self._unsaved, []
                for persist in unsaved:
                    self._carry_out(persist)
            while True:
                if self._failed:
                    failed, self._failed = self._failed, []
                    for node_id, message in failed:
                        self.node.handle_send_failed(node_id, message, self.now_ms())
                effects = self.node.take_effects()
                if not effects and not self._failed:
                    return
                for effect in effects:
                    self._carry_out(effect)
        finally:
            self._dispatching = False

    def _carry_out(self, effect: Effect) -> None:
        """Carry out one effect, on its own: one that fails (a bug) is logged (rate-limited) and counted,
        and costs no other effect; a ``Persist`` or ``ForgetDeletion`` that fails is kept and handed to the
        disk writer again at the next dispatch (the writer reports a sequence number only once it had every
        one up to it, so no answer that waits for the disk goes out before it: cluster/node/datadir.py)."""
        try:
            if isinstance(effect, Send):
                if self.transport is not None:
                    self.transport.send(effect.target, effect.message)
            elif isinstance(effect, ClientReply):
                waiter = self._waiting.pop(effect.request_id, None)
                if waiter is not None:
                    self._answer(waiter, effect.result)
            elif isinstance(effect, ServiceChanged):
                self._on_service_changed(effect.key, effect.view)
            elif isinstance(effect, LifecycleEvent):
                self._on_lifecycle(effect)
            elif isinstance(effect, SettingChanged):
                self._on_setting_changed(effect)
            elif isinstance(effect, (Persist, ForgetDeletion)):
                if self.persist is None:
                    raise RuntimeError("the core persists (durable_writes) but this runtime has no disk")
                self.persist(effect)
        except Exception as exc:
            self.effect_errors_total += 1
            if isinstance(effect, (Persist, ForgetDeletion)):  # kept first: nothing after may lose it
                self._unsaved.append(effect)
            self._effect_errors_log.failed(exc)

    @staticmethod
    def _answer(waiter: _Waiter, result: Result) -> None:
        waiter.result = result
        if waiter.callback is not None:
            try:
                waiter.callback(result)
            except Exception:  # a broken callback costs its own write's answer, never the caller
                log.exception("the answer to a client write failed")
        elif waiter.parked:
            assert waiter.task is not None
            trio.lowlevel.reschedule(waiter.task, outcome.Value(result))

    def _give_up_waiting(self) -> None:
        """Answer 503 to the writes whose answer is overdue (a safety net: the core answers every write)."""
        now_s = trio.current_time()
        waiting = self._waiting
        while waiting:
            request_id, waiter = next(iter(waiting.items()))
            if waiter.deadline_s > now_s:
                return
            del waiting[request_id]
            self._answer(waiter, _OWNER_SILENT)

    def _next_wake_ms(self) -> int:
        """The core's next deadline, or sooner the first waiting write's (``forward_wait_ms``)."""
        deadline = self.node.next_deadline_ms()
        if self._waiting:
            first = next(iter(self._waiting.values()))
            deadline = min(deadline, self._epoch_ms + int((first.deadline_s - self._trio_start) * 1000) + 1)
        return deadline

    def _on_service_changed(self, key: ServiceKey, view: ServiceView) -> None:
        event = self._change_events.pop(key, None)
        if event is not None:
            event.set()
        for listener in self.change_listeners:
            try:
                listener(key, view)
            except Exception as exc:  # a broken listener must not stop replication
                self._change_listener_log.failed(exc)

    def _on_setting_changed(self, effect: SettingChanged) -> None:
        for listener in self.setting_listeners:
            try:
                listener(effect.name, effect.text)
            except Exception as exc:  # a broken listener must not stop replication
                self._setting_listener_log.failed(exc)

    def _on_lifecycle(self, event: LifecycleEvent) -> None:
        if event.kind is LifecycleKind.READY:
            self.ready_event.set()
            gctune.on_ready()
        level = logging.WARNING if event.kind is LifecycleKind.DELETIONS_FORGOTTEN else logging.INFO
        log.log(level, "%s: %s", event.kind.replace("_", " "), event.detail)

    # -- watching ---------------------------------------------------------------------------------
    def change_event(self, key: ServiceKey) -> trio.Event:
        """An event set the next time ``key``'s view changes (shared by all waiters on that key)."""
        event = self._change_events.get(key)
        if event is None:
            if len(self._change_events) > 100_000:
                for stale in self._change_events.values():
                    stale.set()
                self._change_events.clear()
            event = self._change_events[key] = trio.Event()
        return event

    def _pace_snapshots(self) -> None:
        """Hold the snapshot slices to a peer whose send queue is long (a transport that cannot say how long
        its queue is, as the in-memory one, is never held)."""
        targets = self.node.snapshot_targets()
        queued_bytes = getattr(self.transport, "queued_bytes", None)
        if not targets or queued_bytes is None:
            return
        for peer_id in targets:
            self.node.hold_snapshot(peer_id, queued_bytes(peer_id) > SNAPSHOT_BACKLOG_BYTES)

    # -- the timer task ---------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Tick the core at its deadlines until cancelled."""
        task_status.started()
        while True:
            deadline = self._next_wake_ms()
            self._scheduled_ms = deadline
            delay_s = max(0.0, (deadline - self.now_ms()) / 1000)
            if delay_s > 0:
                with trio.move_on_after(delay_s):
                    await self._wake.wait()
            else:
                await trio.lowlevel.checkpoint()
            self._wake = trio.Event()
            self._scheduled_ms = None
            self._pace_snapshots()
            self.node.tick(self.now_ms())
            self._dispatch()
            self._give_up_waiting()
            gctune.maintain(self.node.store.instance_entries)
