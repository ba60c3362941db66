"""One real 3-node cluster for the SDK tests that do not stop nodes (fast beats, short expiry)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client.support import NodeProcesses

SDK_NODE_ARGS = ["--client-beat-interval-ms", "200", "--heartbeat-timeout-ms", "2000", "--instance-expire-ms", "4000"]


@pytest.fixture(scope="session")
def sdk_nodes() -> Iterator[NodeProcesses]:
    with NodeProcesses(3, SDK_NODE_ARGS) as cluster:
        yield cluster
