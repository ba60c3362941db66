"""The fault plan: which fault hits which node for how long, per round. Pure and seeded, testable without Docker."""

from __future__ import annotations

import random
from dataclasses import dataclass

KINDS = ("kill", "pause", "partition", "restart")
NODE_NAMES = ("node1", "node2", "node3")
# What the nodes run with when nothing says otherwise (cluster/node settings).
DEFAULT_HEARTBEAT_TIMEOUT_MS = 15_000
DEFAULT_INSTANCE_EXPIRE_MS = 30_000


@dataclass(frozen=True)
class PlannedRound:
    """One round of the plan: ``fault`` on ``node`` for ``duration_ms``; ``long`` when it outlasts the
    heartbeat timeout."""

    index: int
    fault: str
    node: str
    duration_ms: int
    long: bool


def plan_rounds(
    rounds: int, seed: int, heartbeat_timeout_ms: int, nodes: tuple[str, ...] = NODE_NAMES,
    min_fault_ms: int = 1_000, kinds: tuple[str, ...] = KINDS,
) -> list[PlannedRound]:
    """Which fault hits which node for how long, per round. Deterministic in its arguments.

    Every kind appears at least once when ``rounds >= 4``, kill and partition when ``rounds >= 2`` (of
    ``kinds``, when it is narrowed). About
    half of the rounds (at least one) are "long": they hold the fault for 1.2-2.2 x the heartbeat timeout;
    the others for 0.3-0.8 x (never under ``min_fault_ms``).
    """
    rng = random.Random(seed)
    if rounds >= len(kinds) and rounds >= 4:
        must = list(kinds)
    elif rounds >= 2:
        must = [k for k in ("kill", "partition") if k in kinds] or list(kinds[:rounds])
    else:
        must = []
    chosen = must + [rng.choice(kinds) for _ in range(rounds - len(must))]
    rng.shuffle(chosen)
    long_rounds = set(rng.sample(range(rounds), k=max(1, rounds // 2))) if rounds else set()
    plan = []
    for i, kind in enumerate(chosen):
        is_long = i in long_rounds
        factor = rng.uniform(1.2, 2.2) if is_long else rng.uniform(0.3, 0.8)
        duration = max(min_fault_ms, int(heartbeat_timeout_ms * factor))
        plan.append(PlannedRound(i + 1, kind, rng.choice(nodes), duration, is_long))
    return plan
