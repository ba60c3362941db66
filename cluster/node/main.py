"""``distro-node``: the entry point that runs one registry node until SIGTERM or SIGINT.

The command line is :mod:`cluster.node.settings`; the node itself is :class:`cluster.node.wiring.NodeServer`.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import trio

from cluster.node import gctune, stallwatch
from cluster.node.datadir import DataDir, DataDirError
from cluster.node.fdlimit import plan_connections, raise_soft_limit
from cluster.node.listeners import ListenError
from cluster.node.settings import (
    WEAK_CLUSTER_SECRET_BYTES,
    ConfigError,
    NodeSettings,
    beat_timing_warning,
    parse_settings,
)
from cluster.node.wiring import NodeServer

log = logging.getLogger("distro.node")


async def run_node(
    settings: NodeSettings,
    *,
    data_dir: DataDir | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a node until cancelled (keeping its cluster data in ``data_dir`` when given);
    ``task_status.started(http_port)``."""
    server = NodeServer(settings, data_dir=data_dir)
    await server.run(task_status=task_status)


async def _main_async(settings: NodeSettings, data_dir: DataDir) -> None:
    """Run until SIGTERM or SIGINT; then drain (gRPC clients are asked to move, for up to
    ``--grpc-drain-ms``) and stop. A second signal during the drain stops at once."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        server = NodeServer(settings, data_dir=data_dir)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.run)
            async for signum in signals:
                log.info("stopping: received %s", signal.Signals(signum).name)
                break
            with trio.CancelScope() as drain_scope:
                nursery.start_soon(_cancel_on_next_signal, signals, drain_scope)
                await server.drain()
            nursery.cancel_scope.cancel()


async def _cancel_on_next_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    async for signum in signals:
        log.info("stopping at once: received %s during the drain", signal.Signals(signum).name)
        scope.cancel()
        return


def _within_fd_limit(settings: NodeSettings) -> NodeSettings:
    """Raise the soft descriptor limit and keep the connection caps below it (cluster/node/fdlimit.py)."""
    before, soft, hard = raise_soft_limit()
    if soft != before:
        log.info("file descriptors: soft limit raised from %d to %d (hard limit %d)", before, soft, hard)
    plan = plan_connections(
        soft, max_connections=settings.max_connections, max_connections_per_ip=settings.max_connections_per_ip,
        fd_reserve=settings.fd_reserve, peers=len(settings.peers),
    )
    log.info("%s", plan.describe(settings.max_connections, settings.max_connections_per_ip))
    return replace(settings, max_connections=plan.max_connections, max_connections_per_ip=plan.max_connections_per_ip)


def _leaves(group: BaseExceptionGroup[ListenError]) -> list[ListenError]:
    """The errors inside a (possibly nested) exception group."""
    found: list[ListenError] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        else:
            found.append(exc)
    return found


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    try:
        settings = parse_settings(argv)
    except ConfigError as exc:
        print(f"distro-node: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=getattr(logging, settings.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s " + settings.node_id + " %(name)s: %(message)s",
    )
    for secret in (settings.cluster_secret, *settings.previous_cluster_secrets):
        if secret and len(secret.encode()) < WEAK_CLUSTER_SECRET_BYTES:
            log.warning(
                "a cluster secret of only %d bytes: one recorded handshake lets an attacker guess it offline. "
                "Use 32 random hex digits or more: python3 -c 'import secrets; print(secrets.token_hex(32))'",
                len(secret.encode()),
            )
    beat_warning = beat_timing_warning(settings.core)
    if beat_warning is not None:
        log.warning("%s", beat_warning)
    try:
        # Before the event loop: lock the folder, check the file, load what it holds.
        data_dir = DataDir.open(settings.data_dir, settings.node_id)
    except DataDirError as exc:
        print(f"distro-node: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        watch = stallwatch.from_environment()
    except ValueError as exc:
        print(f"distro-node: {exc}", file=sys.stderr)
        sys.exit(2)
    gctune.install()
    settings = _within_fd_limit(settings)
    try:
        trio.run(_main_async, settings, data_dir, instruments=[watch] if watch is not None else [])
    except* ListenError as group:
        for failure in _leaves(group):
            print(f"distro-node: {failure.strerror or failure}; is another node or program using it?",
                  file=sys.stderr)
        sys.exit(2)
    finally:
        data_dir.close()
    log.info("stopped")


if __name__ == "__main__":
    main()


__all__ = ["main", "run_node"]
