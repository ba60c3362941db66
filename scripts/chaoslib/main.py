"""Fault injection against the docker compose cluster while a workload runs and invariants are checked.

    scripts/chaos --rounds N --report FILE [--seed S] [--instances 200] [--services 20] [--up]

The cluster must be running (``scripts/cluster up``; or pass ``--up`` to run it first). Each round injects
one fault into one node, chosen by the seeded RNG (every kind appears at least once when N >= 4, kill and
partition when N >= 2):

  kill       docker kill -s KILL the container, wait, docker start it
  pause      docker pause, wait, docker unpause
  partition  docker network disconnect the container from the compose network, wait, reconnect it
             (with its aliases); the host cannot reach its published port while it is cut
  restart    docker stop -t 10 (graceful), wait, docker start

Half of the rounds (at least one) hold the fault for longer than the heartbeat timeout. Meanwhile a
workload registers --instances instances in --services services through random nodes, light-beats each
one every ~1-2 s (re-registering on code 20404) through a random reachable node, lists every service on
every node continuously, deregisters a few instances and lets a few go silent every round. Checked all
the time, with violations recorded per round:

  1. live-instance-missing      a registered, heartbeating instance is missing from a reachable node's
                                list for longer than the heartbeat timeout (reachable: the list request
                                to that node succeeded; the clock restarts when the node becomes unreachable)
  2. deregistered-still-listed  an instance is still listed by a reachable node more than the expiry after
                                its deregistration was acknowledged (or after the node became reachable again)
  3. no-agreement-after-heal    after a heal, the three nodes do not list the same instances for every
                                service within --converge-bound-ms (default: expiry + 10 s); the time from
                                heal to agreement is the round's converge_ms
  and, once after the last round: silent-not-expired, live-not-listed-at-end, live-unhealthy-at-end.

gRPC clients (--grpc-clients, on each node's published gRPC port) behave as today's Nacos SDKs: they
connect (ServerCheck, ConnectionSetup on the bi-stream), register one instance in each of
--grpc-services-per-client services, health-check every --grpc-keepalive-ms and, when the connection
breaks or a health check goes unanswered, move to the next node and register again. Every third one is
fragile: it gives up when its connection breaks. Each round, before the fault, a fresh client and a fresh
fragile one start on the node the fault will hit and one client moves there; during the fault one client
closes cleanly and one freezes (stops reading and writing, its socket open). Checked all the time:

  4. grpc-instance-missing      a connected client's instance is missing from a reachable node's list for
                                longer than the present bound after its (re)registration (default: the
                                heartbeat timeout, three of the holder's renewal intervals); a client that
                                is reconnecting is judged again from its next registration
  5. grpc-ended-still-listed    an instance of a client that closed, froze or gave up is still listed more
                                than the gone bound after that (default: max(expiry + max(renewal
                                interval, peer timeout), probe after idle + give up + check interval) +
                                peer timeout + 5 s), or than the heal bound after the heal of a fault in
                                effect meanwhile (peer timeout + anti-entropy interval + 5 s)
  and, at the end: grpc-live-not-listed-at-end, grpc-live-unhealthy-at-end. The bounds and what they are
  made of are printed at the start and written to the report's settings.grpc.

Timings: --heartbeat-timeout-ms / --instance-expire-ms; by default the values the containers run with
(docker inspect), else $DISTRO_HEARTBEAT_TIMEOUT_MS / $DISTRO_INSTANCE_EXPIRE_MS, else .env, else
15000 / 30000. The cluster is restored (unpaused, reconnected, started) at the end, also on Ctrl-C.
Exit status: 0 no violations, 1 violations, 2 cannot run (cluster not up, bad arguments, or its containers
were removed or recreated by someone else during the run), 130 interrupted.
"""

from __future__ import annotations

import argparse
import random
import sys

from chaoslib.plan import DEFAULT_HEARTBEAT_TIMEOUT_MS, KINDS, plan_rounds


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"unknown fault kind(s) {bad}; expected some of {','.join(KINDS)}")
    return kinds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, required=True, help="faults to inject, one per round")
    p.add_argument("--report", required=True, help="write the JSON report here")
    p.add_argument("--seed", type=int, default=None, help="RNG seed (default: random, printed)")
    p.add_argument("--instances", type=int, default=200, help="instances registered at the start (200)")
    p.add_argument("--services", type=int, default=20, help="services they are spread over (20)")
    p.add_argument("--heartbeat-timeout-ms", type=int, default=None, help="default: what the containers run with")
    p.add_argument("--instance-expire-ms", type=int, default=None, help="default: what the containers run with")
    p.add_argument("--beat-interval-ms", type=int, default=None,
                   help="each instance beats every 0.5-1 x this (default min(2000, heartbeat timeout / 2))")
    p.add_argument("--read-interval-ms", type=int, default=500, help="pause between two list sweeps of a node")
    p.add_argument("--read-parallelism", type=int, default=4, help="services listed at once (on all nodes) in a sweep")
    p.add_argument("--read-timeout-ms", type=int, default=2000, help="a list request slower than this fails")
    p.add_argument("--write-timeout-ms", type=int, default=None,
                   help="a beat or registration slower than this fails, the client tries another node "
                        "(default: heartbeat timeout / 2 within 1000..3000)")
    p.add_argument("--converge-bound-ms", type=int, default=None, help="agreement after a heal within (expiry + 10 s)")
    p.add_argument("--settle-ms", type=int, default=1000, help="pause after convergence before the next round")
    p.add_argument("--dereg-fraction", type=float, default=0.01, help="instances deregistered per round (1%%, >= 1)")
    p.add_argument("--silent-fraction", type=float, default=0.005, help="instances going silent per round (>= 1)")
    p.add_argument("--concurrency", type=int, default=32,
                   help="registrations in flight at most at the start; idle connections kept per node")
    p.add_argument("--grpc-clients", type=int, default=9,
                   help="gRPC (Nacos 2.x-style) clients at the start, spread over the nodes, every third one "
                        "fragile (9; 0: none)")
    p.add_argument("--grpc-services-per-client", type=int, default=2,
                   help="services each gRPC client registers one instance in (2)")
    p.add_argument("--grpc-keepalive-ms", type=int, default=None,
                   help="a gRPC client's health-check interval (default: heartbeat timeout / 3, at most 5000)")
    p.add_argument("--grpc-present-bound-ms", type=int, default=None,
                   help="a connected client's instances listed everywhere within (default: the heartbeat timeout)")
    p.add_argument("--grpc-gone-bound-ms", type=int, default=None,
                   help="an ended client's instances gone everywhere within (default: from expiry, detection and "
                        "peer timeout, see the report's settings.grpc)")
    p.add_argument("--kinds", type=_kinds, default=KINDS,
                   help="comma-separated fault kinds to draw from (default: kill,pause,partition,restart)")
    p.add_argument("--up", action="store_true", help="run scripts/cluster up first")
    p.add_argument("--keep", action="store_true", help="do not deregister the workload's instances at the end")
    p.add_argument("--plan", action="store_true", help="print the fault plan and exit")
    p.add_argument("--quiet", action="store_true", help="no ticker")
    p.add_argument("--verbose", action="store_true", help="print what disagrees while waiting for agreement")
    return p


def main(argv: list[str] | None = None) -> int:
    """``scripts/chaos``: parse the flags, print the plan (``--plan``) or run it (``chaoslib.run``)."""
    args = build_parser().parse_args(argv)
    if args.rounds < 0 or args.instances < 1 or args.services < 1:
        print("chaos: --rounds must be >= 0, --instances and --services >= 1", file=sys.stderr)
        return 2
    if args.grpc_clients < 0 or args.grpc_services_per_client < 1:
        print("chaos: --grpc-clients must be >= 0, --grpc-services-per-client >= 1", file=sys.stderr)
        return 2
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    if args.plan:
        hb = args.heartbeat_timeout_ms or DEFAULT_HEARTBEAT_TIMEOUT_MS
        for r in plan_rounds(args.rounds, args.seed, hb, kinds=args.kinds):
            print(f"round {r.index}: {r.fault:<9} {r.node} {r.duration_ms} ms{' long' if r.long else ''}")
        return 0
    try:
        from chaoslib import run
    except ImportError as exc:
        print(f"chaos: {exc}; run it with the project's venv (scripts/chaos does)", file=sys.stderr)
        return 2
    return run.run(args)
