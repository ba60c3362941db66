"""Tools shipped with the core for tests and ``scripts/simulate`` (pure too: seeded, no real clock).

    harness   Harness: a few DistroNodes driven by hand (no message moves, no time passes unless told)
    sim       Simulator: N DistroNodes on a simulated clock and a faulty network, with heartbeating clients
    checkers  SafetyChecker, BeatChecker and check_converged: readable violations, never asserts
    beatlog   BeatLog: the faults, beats and health events the simulator records for BeatChecker
    disk      SimDisk: a node's persisted entries, which survive its crash
    datawork  ClusterDataWorkload and check_cluster_data: namespaces and settings written and checked
    grpcsim   SimGrpcClient: Nacos 2.x clients whose instances live by their connection (reconnect, redo)
    runner    run_schedule: one seeded fault schedule end to end (faults, heal, settle, check)
    starve    StarvedSimulator and StableBeatChecker: nodes that stop for a while, then tick before reading

Nothing is imported here, so importing one submodule never drags in the others.
"""

__all__ = ["beatlog", "checkers", "datawork", "disk", "grpcsim", "harness", "runner", "sim", "starve"]
