"""One real 3-node cluster for the SDK tests that do not stop nodes (fast beats, short expiry)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client.support import NodeProcesses

SDK_NODE_ARGS = [
    "--client-beat-interval-ms", "200", "--heartbeat-timeout-ms", "2000", "--instance-expire-ms", "4000",
    # the clients' clientIP is honoured from loopback (test_auto_switches_to_watch_when_pushes_do_not_arrive
    # announces an address pushes cannot reach); without it pushes go to the caller's own address
    "--push-trusted-networks", "127.0.0.0/8",
]


@pytest.fixture(scope="session")
def sdk_nodes() -> Iterator[NodeProcesses]:
    with NodeProcesses(3, SDK_NODE_ARGS) as cluster:
        yield cluster
