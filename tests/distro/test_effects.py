"""Lifecycle event kinds (:class:`distro.effects.LifecycleKind`) print exactly as the bare strings did.

Proves: the kinds keep their values (``ready``, ``peer_up``, ``peer_down``, ``ownership_changed``, and
``deletions_forgotten`` added after them),
compare equal to them, and format as them in log records (``%s``), f-strings and ``str.replace`` (the runtime's log
line), so logs and simulator traces read the same as before the enum; a node that becomes ready emits
``LifecycleKind.READY``.
"""

from __future__ import annotations

import logging

from distro.config import DistroConfig
from distro.effects import LifecycleEvent, LifecycleKind
from distro.node import DistroNode


def test_kinds_keep_their_string_values() -> None:
    assert [k.value for k in LifecycleKind] == [
        "ready", "peer_up", "peer_down", "ownership_changed", "deletions_forgotten",
    ]
    assert LifecycleKind.PEER_DOWN == "peer_down"


def test_kinds_format_as_their_values() -> None:
    kind = LifecycleKind.OWNERSHIP_CHANGED
    log_line = logging.LogRecord("distro", logging.INFO, __file__, 0, "%s: %s", (kind, "d"), None).getMessage()
    assert f"{kind}" == str(kind) == "ownership_changed"
    assert log_line == "ownership_changed: d"
    assert kind.replace("_", " ") == "ownership changed"


def test_a_lone_node_reports_ready_with_the_enum() -> None:
    config = DistroConfig(snapshot_timeout_ms=100)
    node = DistroNode("n1", config, 0)
    node.tick(100)
    events = [e for e in node.take_effects() if isinstance(e, LifecycleEvent)]
    assert [e.kind for e in events][:1] == [LifecycleKind.READY]
    assert events[0].kind is LifecycleKind.READY
