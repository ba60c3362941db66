"""The trio runtime drives the core: writes are forwarded and replicated, timers follow the core's
deadlines (virtual time via autojump_clock), a dead owner's keys move and instances expire. No sockets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from cluster.loglimit import RateLimitedLog
from cluster.node.datadir import DataDir, DiskWriter
from cluster.node.memlink import MemoryNetwork
from cluster.node.pump import NodeRuntime
from distro.config import DistroConfig
from distro.effects import ForgetDeletion, Persist
from distro.model import ServiceKey, ServiceMeta, make_instance, service_key
from distro.requests import Beat, CreateService, Deregister, PutSetting, Register, Result
from tests.memcluster import make_runtimes, start_on_network
from tests.polling import wait_for

KEY = ServiceKey("public", "DEFAULT_GROUP", "orders")


async def start_cluster(nursery: trio.Nursery, count: int = 3) -> tuple[MemoryNetwork, list[NodeRuntime]]:
    config = DistroConfig(cluster_size=count, heartbeat_timeout_ms=3000, instance_expire_ms=6000)
    runtimes = make_runtimes(config, count)
    return await start_on_network(nursery, runtimes), runtimes


def listed(runtime: NodeRuntime, ip: str) -> bool:
    view = runtime.node.view(KEY)
    return view is not None and any(inst.ip == ip for inst in view.instances)


async def test_write_on_any_node_reaches_every_node(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        _, runtimes = await start_cluster(nursery)
        owner = runtimes[0].node.owner_of(KEY)
        assert owner is not None
        assert all(r.node.owner_of(KEY) == owner for r in runtimes)
        non_owner = next(r for r in runtimes if r.node.node_id != owner)
        result = await non_owner.submit(Register(KEY, make_instance("10.0.0.1", 80)))
        assert result.status == 200 and result.body == "ok"
        assert non_owner.node.statistics().forwards_sent == 1
        await wait_for(lambda: all(listed(r, "10.0.0.1") for r in runtimes))
        result = await runtimes[2].submit(Deregister(KEY, "DEFAULT", "10.0.0.1", 80))
        assert result.body == "ok"
        await wait_for(lambda: not any(listed(r, "10.0.0.1") for r in runtimes))
        nursery.cancel_scope.cancel()


async def test_submit_then_answers_at_once_on_the_owner_and_later_elsewhere(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The task-less submit (the gRPC front door's): the owner's answer is returned, a forwarded write's
    comes to the callback when the owner replies."""
    async with trio.open_nursery() as nursery:
        _, runtimes = await start_cluster(nursery)
        owner = next(r for r in runtimes if r.node.node_id == r.node.owner_of(KEY))
        non_owner = next(r for r in runtimes if r is not owner)
        answers: list[Result] = []
        result = owner.submit_then(Register(KEY, make_instance("10.0.0.7", 80)), answers.append)
        assert result is not None and result.body == "ok" and answers == []
        assert non_owner.submit_then(Register(KEY, make_instance("10.0.0.8", 80)), answers.append) is None
        await wait_for(lambda: len(answers) == 1)
        assert answers[0].status == 200 and answers[0].body == "ok"
        await wait_for(lambda: all(listed(r, "10.0.0.8") for r in runtimes))
        assert non_owner._waiting == {}
        nursery.cancel_scope.cancel()


async def test_a_batch_carries_out_its_inputs_effects_once_at_its_end(autojump_clock: trio.testing.MockClock) -> None:
    """NodeRuntime.batch (the HTTP keep-alive lane's step): the owner's answers come at once as usual, but
    peer sends and view changes wait for the end of the batch, then go out together; nested, one batch."""
    async with trio.open_nursery() as nursery:
        _, runtimes = await start_cluster(nursery)
        owner = next(r for r in runtimes if r.node.node_id == r.node.owner_of(KEY))
        non_owner = next(r for r in runtimes if r is not owner)
        sent: list[object] = []
        real_send = non_owner.transport.send

        def recording_send(node_id: str, message: object) -> None:
            sent.append(message)
            real_send(node_id, message)

        non_owner.transport.send = recording_send
        changes: list[ServiceKey] = []
        owner.change_listeners.append(lambda key, view: changes.append(key))
        answers: list[Result] = []
        with non_owner.batch():
            for i in range(3):
                assert non_owner.submit_then(Register(KEY, make_instance(f"10.0.5.{i}", 80)), answers.append) is None
            with non_owner.batch():
                pass
            assert sent == []  # the three forwards wait for the end of the batch
        assert len(sent) == 3
        with owner.batch():
            result = owner.submit_then(Register(KEY, make_instance("10.0.5.9", 80)), answers.append)
            assert result is not None and result.body == "ok"  # answered at once
            assert changes == []  # its view change waits
        assert changes == [KEY]
        await wait_for(lambda: len(answers) == 3)
        assert all(a.body == "ok" for a in answers)
        await wait_for(lambda: all(listed(r, "10.0.5.9") and listed(r, "10.0.5.2") for r in runtimes))
        nursery.cancel_scope.cancel()


async def test_silent_instance_expires_everywhere(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        _, runtimes = await start_cluster(nursery)
        await runtimes[1].submit(Register(KEY, make_instance("10.0.0.2", 80)))
        await wait_for(lambda: all(listed(r, "10.0.0.2") for r in runtimes))
        start = trio.current_time()
        await wait_for(lambda: all(not v.instances[0].healthy for r in runtimes if (v := r.node.view(KEY))))
        assert trio.current_time() - start >= 3.0
        await wait_for(lambda: not any(listed(r, "10.0.0.2") for r in runtimes))
        assert trio.current_time() - start >= 6.0
        nursery.cancel_scope.cancel()


async def test_dead_owner_keys_move_and_beating_instance_survives(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        network, runtimes = await start_cluster(nursery)
        owner_id = runtimes[0].node.owner_of(KEY)
        survivors = [r for r in runtimes if r.node.node_id != owner_id]
        await survivors[0].submit(Register(KEY, make_instance("10.0.0.3", 80)))
        await wait_for(lambda: all(listed(r, "10.0.0.3") for r in runtimes))
        network.detach(owner_id)  # the owner dies

        async def beat_forever() -> None:
            while True:
                result = await survivors[1].submit(Beat(KEY, "DEFAULT", "10.0.0.3", 80))
                assert isinstance(result.body, dict)
                if result.body.get("code") == 20404:
                    await survivors[1].submit(Register(KEY, make_instance("10.0.0.3", 80)))
                await trio.sleep(1)

        nursery.start_soon(beat_forever)
        await wait_for(lambda: all(r.node.owner_of(KEY) not in (None, owner_id) for r in survivors))
        new_owner = {r.node.owner_of(KEY) for r in survivors}
        assert len(new_owner) == 1
        for _ in range(20):  # 20 s: beyond the expiry; the instance must stay listed and healthy
            await trio.sleep(1)
            for r in survivors:
                view = r.node.view(KEY)
                assert view is not None and view.instances and view.instances[0].healthy
        nursery.cancel_scope.cancel()


async def held_write_runtime(nursery: trio.Nursery) -> tuple[NodeRuntime, list[Persist]]:
    """A one-node runtime with durable writes whose disk never finishes: cluster-data writes stay held."""
    runtime = NodeRuntime("n0", DistroConfig(cluster_size=1, durable_writes=True), address="127.0.0.1:8848")
    written: list[Persist] = []
    runtime.persist = written.append
    await nursery.start(runtime.run)
    with trio.fail_after(30):
        await runtime.ready_event.wait()
    return runtime, written


async def test_a_write_never_answered_gets_a_503_after_the_forward_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The safety net: the core answers every write, but should it not, the client is not kept forever."""
    async with trio.open_nursery() as nursery:
        runtime, written = await held_write_runtime(nursery)
        started = trio.current_time()
        with trio.fail_after(60):
            result = await runtime.submit(CreateService(KEY, ServiceMeta()))
        assert result.status == 503 and "did not answer" in str(result.body)
        waited = trio.current_time() - started
        assert runtime.forward_wait_ms / 1000 <= waited < runtime.forward_wait_ms / 1000 + 1
        assert written and runtime._waiting == {}
        # The disk catches up later: the answer has nobody to go to, and nothing breaks.
        runtime.persisted(written[-1].seq)
        assert runtime._waiting == {}
        nursery.cancel_scope.cancel()


async def test_submit_then_gets_the_503_after_the_forward_wait(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        runtime, _ = await held_write_runtime(nursery)
        started = trio.current_time()
        answers: list[tuple[Result, float]] = []
        assert runtime.submit_then(CreateService(KEY, ServiceMeta()),
                                   lambda r: answers.append((r, trio.current_time()))) is None
        await wait_for(lambda: bool(answers), timeout_s=60)
        result, at = answers[0]
        assert result.status == 503 and runtime.forward_wait_ms / 1000 <= at - started < runtime.forward_wait_ms / 1000 + 1
        assert runtime._waiting == {}
        nursery.cancel_scope.cancel()


async def test_a_held_write_is_answered_when_on_disk_and_a_cancelled_one_is_forgotten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        runtime, written = await held_write_runtime(nursery)
        results: list[Result] = []

        async def create(name: str) -> None:
            results.append(await runtime.submit(CreateService(service_key("public", None, name), ServiceMeta())))

        with trio.CancelScope() as gone:  # a client that goes away while its write waits for the disk
            nursery.start_soon(create, "kept")
            await wait_for(lambda: len(runtime._waiting) == 1)
            gone.cancel()
            await runtime.submit(CreateService(service_key("public", None, "cancelled"), ServiceMeta()))
        assert len(runtime._waiting) == 1  # only the first: the cancelled one was forgotten at once
        runtime.persisted(written[-1].seq)
        await wait_for(lambda: results == [Result(200, "ok")])
        assert runtime._waiting == {}
        nursery.cancel_scope.cancel()


async def test_snapshot_slices_to_a_peer_with_a_long_send_queue_are_held(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cluster.node.pump import SNAPSHOT_BACKLOG_BYTES
    from distro.node import DistroNode

    runtime = NodeRuntime("n1", DistroConfig(cluster_size=3), address="127.0.0.1:8848")

    class Transport:
        queued = {"n2": SNAPSHOT_BACKLOG_BYTES + 1, "n3": SNAPSHOT_BACKLOG_BYTES}

        def send(self, node_id: str, message: object) -> None:
            pass

        def queued_bytes(self, node_id: str) -> int:
            return self.queued[node_id]

    held: dict[str, bool] = {}
    monkeypatch.setattr(DistroNode, "snapshot_targets", lambda self: ("n2", "n3"))
    monkeypatch.setattr(DistroNode, "hold_snapshot", lambda self, peer, on: held.__setitem__(peer, on))
    runtime.transport = Transport()
    runtime._pace_snapshots()
    assert held == {"n2": True, "n3": False}


def create(name: str) -> CreateService:
    return CreateService(service_key("public", None, name), ServiceMeta())


async def test_an_effect_that_fails_loses_none_of_the_others(autojump_clock: trio.testing.MockClock) -> None:
    """Each effect is carried out on its own: when one fails (a bug; here the first write's Persist), the rest
    of the batch's effects are still carried out (the second write's Persist), the failure is counted, and the
    failed Persist is handed over again at the next dispatch. (A failure used to end the dispatch: the rest of
    the batch's effects were dropped, the second write's Persist with them, and a later Persist's report
    would have acknowledged that write although it never reached the disk.)"""
    async with trio.open_nursery() as nursery:
        runtime, written = await held_write_runtime(nursery)
        refusing = [True]

        def flaky(effect: Persist | ForgetDeletion) -> None:
            if refusing[0] and isinstance(effect, Persist) and effect.seq == 1:
                raise RuntimeError("a bug in handing a Persist to the disk")
            assert isinstance(effect, Persist)
            written.append(effect)

        runtime.persist = flaky
        answers: list[Result] = []
        with runtime.batch():
            for name in ("first", "second"):
                assert runtime.submit_then(create(name), answers.append) is None
        assert [p.seq for p in written] == [2] and runtime.effect_errors_total == 1 and answers == []
        refusing[0] = False
        assert runtime.submit_then(create("third"), answers.append) is None
        assert [p.seq for p in written] == [2, 1, 3] and runtime.effect_errors_total == 1
        runtime.persisted(3)
        assert answers == [Result(200, "ok")] * 3
        nursery.cancel_scope.cancel()


async def test_a_failed_persist_is_kept_even_when_logging_its_failure_fails(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The Persist that failed is kept for the next dispatch before its failure is logged, so a log that
    fails too (``RateLimitedLog`` reads trio's clock, which raises outside trio) cannot lose it: a lost
    Persist would hold every later durable answer back for good (the disk writer reports only a sequence
    it had whole)."""
    async with trio.open_nursery() as nursery:
        runtime, written = await held_write_runtime(nursery)
        refusing = [True]

        def flaky(effect: Persist | ForgetDeletion) -> None:
            if refusing[0]:
                raise RuntimeError("a bug in handing a Persist to the disk")
            assert isinstance(effect, Persist)
            written.append(effect)

        def no_clock() -> float:
            raise RuntimeError("no clock here")

        runtime.persist = flaky
        runtime._effect_errors_log = RateLimitedLog(logging.getLogger("test"), "failing log", now_s=no_clock)
        answers: list[Result] = []
        with pytest.raises(RuntimeError, match="no clock here"):
            runtime.submit_then(create("first"), answers.append)
        refusing[0] = False
        runtime._effect_errors_log = RateLimitedLog(logging.getLogger("test"), "log")
        assert runtime.submit_then(create("second"), answers.append) is None
        assert [p.seq for p in written] == [1, 2]
        nursery.cancel_scope.cancel()


async def test_a_persist_that_fails_is_handed_over_again_and_nothing_is_acknowledged_before(
    tmp_path: Path,
) -> None:
    """A Persist the runtime cannot hand to the disk writer (a bug) is counted and handed over again at the
    next dispatch; until it is on disk no answer that waits for the disk goes out, not even that of a later
    write whose own Persist is written first (the writer reports only a sequence it has whole). trio's real
    clock: the writer commits in a worker thread."""
    runtime = NodeRuntime("n0", DistroConfig(cluster_size=1, durable_writes=True, snapshot_timeout_ms=50),
                          address="127.0.0.1:8848")
    data_dir = DataDir.open(tmp_path / "n0", "n0")
    disk = DiskWriter(data_dir, runtime.persisted)
    refusing = [True]

    def flaky(effect: Persist | ForgetDeletion) -> None:
        if refusing[0] and isinstance(effect, Persist) and effect.seq == 1:
            raise RuntimeError("a bug in handing a Persist to the disk")
        disk.submit(effect)

    runtime.persist = flaky
    answers: list[Result] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(disk.run)
        await nursery.start(runtime.run)
        with trio.fail_after(30):
            await runtime.ready_event.wait()
        for name in ("first", "second"):
            assert runtime.submit_then(create(name), answers.append) is None
        assert runtime.effect_errors_total >= 2  # seq 1 refused at once, and again at the second's dispatch
        await wait_for(lambda: disk.rows_written == 1, what="the second write's row")
        assert disk.backlog == 0 and answers == []  # seq 2 is on disk, seq 1 is not: nothing acknowledged
        refusing[0] = False
        await wait_for(lambda: len(answers) == 2, what="both answers")
        assert answers == [Result(200, "ok")] * 2 and disk.rows_written == 2
        nursery.cancel_scope.cancel()
    data_dir.close()


async def test_a_listener_that_fails_every_time_is_logged_once_then_rate_limited(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    """A broken change or setting listener fails at every change: its first failure is logged with its
    traceback, the next ones within a minute are only counted (cluster/loglimit.py), and replication and
    the answers go on."""

    def broken(*_: object) -> None:
        raise RuntimeError("a broken listener")

    runtime = NodeRuntime("n0", DistroConfig(cluster_size=1), address="127.0.0.1:8848")
    runtime.change_listeners.append(broken)
    runtime.setting_listeners.append(broken)
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        with trio.fail_after(30):
            await runtime.ready_event.wait()
        for n in range(5):
            key = service_key("public", None, f"svc{n}")
            assert await runtime.submit(Register(key, make_instance(f"10.0.0.{n + 1}", 80))) == Result(200, "ok")
            await wait_for(lambda key=key: runtime.node.view(key) is not None)  # type: ignore[misc]
            assert await runtime.submit(PutSetting(f"s{n}", "on")) == Result(200, "ok")
        await wait_for(lambda: runtime.node.settings().get("s4") == "on")
        nursery.cancel_scope.cancel()
    failed = [r for r in caplog.records if "listener failed" in r.getMessage()]
    assert [(r.getMessage().split(":")[0], r.exc_info is not None) for r in failed] == [
        ("change listener failed", True), ("setting listener failed", True)]
