"""Run one deterministic simulated schedule with faults, then check that the cluster converged.

    scripts/simulate --seed 42 [--steps 3000] [--nodes 5] [--loss 0.02] [--dup 0.02]
                     [--partition-rate 0.02] [--crash-rate 0.01] [--grpc-rate 0.2] [--check-every 1] [--trace]

``--grpc-rate`` adds gRPC clients (instances that live by their connection, distro/testing/grpcsim.py): the
per-step probability that one connects, closes or dies. 0 (the default) keeps the heartbeat-only schedules.

Exit 0 with a one-line summary when it converged; otherwise print the violations and
"reproduce with --seed N" and exit 1.
"""

from __future__ import annotations

import argparse
import time

from distro.testing.runner import run_schedule
from distro.testing.sim import FaultOptions


def main(argv: list[str] | None = None) -> int:
    """``scripts/simulate``: play the schedule of ``--seed``; 0 when the cluster converged, else 1."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--loss", type=float, default=0.02, help="message drop probability")
    parser.add_argument("--dup", type=float, default=0.02, help="message duplication probability")
    parser.add_argument("--max-delay-ms", type=int, default=30)
    parser.add_argument("--partition-rate", type=float, default=0.02, help="per-step probability of isolating a node")
    parser.add_argument("--one-way-rate", type=float, default=0.01, help="per-step probability of a one-way cut")
    parser.add_argument("--heal-rate", type=float, default=0.03)
    parser.add_argument("--crash-rate", type=float, default=0.01)
    parser.add_argument("--restart-rate", type=float, default=0.05)
    parser.add_argument("--grpc-rate", type=float, default=0.0,
                        help="per-step probability of a gRPC client action (connect, close, die); 0: none")
    parser.add_argument("--check-every", type=int, default=1, help="check safety every N steps (0: only at the end)")
    parser.add_argument("--trace", action="store_true", help="print lifecycle events and faults")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.steps < 0:
        parser.error("--nodes must be at least 1 and --steps not negative")
    faults = FaultOptions(
        delay_max_ms=args.max_delay_ms,
        drop_probability=args.loss,
        duplicate_probability=args.dup,
        partition_probability=args.partition_rate,
        one_way_partition_probability=args.one_way_rate,
        heal_probability=args.heal_rate,
        crash_probability=args.crash_rate,
        restart_probability=args.restart_rate,
        grpc_probability=args.grpc_rate,
    )
    started = time.monotonic()
    report = run_schedule(
        args.seed,
        nodes=args.nodes,
        steps=args.steps,
        faults=faults,
        check_every=args.check_every,
        trace=print if args.trace else None,
    )
    elapsed = time.monotonic() - started
    print(f"{report.summary()} ({elapsed:.1f}s wall)")
    if report.converged:
        return 0
    for violation in report.violations[:20]:
        print(f"  violation: {violation}")
    grpc = f" --grpc-rate {args.grpc_rate}" if args.grpc_rate else ""
    print(f"reproduce with --seed {args.seed} --steps {args.steps} --nodes {args.nodes}{grpc}")
    return 1
