"""Hypothesis profiles for the whole suite, chosen with ``HYPOTHESIS_PROFILE`` (default ``ci``).

- ``dev``: a handful of examples, for a quick edit-run loop.
- ``ci``: what CI runs. The stateful simulator test (tests/sim/test_convergence.py) plays
  3 x ``max_examples`` generated schedules over its three configurations: 3 x 700 = 2,100 under ci.
- ``soak``: far more (3 x 17,000 = 51,000 schedules), for a long run on a spare machine.

Every profile prints the failing example's blob (``@reproduce_failure``) and keeps Hypothesis's normal
random seeding (``derandomize=False``), so each run explores new schedules and a failure can be replayed.
Tests that pin their own ``max_examples`` (tests/cluster) are not affected.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "dev",
    max_examples=10,
    stateful_step_count=30,
    deadline=None,
    print_blob=True,
    derandomize=False,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile(
    "ci",
    max_examples=700,
    stateful_step_count=40,
    deadline=None,
    print_blob=True,
    derandomize=False,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile(
    "soak",
    max_examples=17_000,
    stateful_step_count=50,
    deadline=None,
    print_blob=True,
    derandomize=False,
    suppress_health_check=_SUPPRESSED,
)

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
