"""The benchmark behind ``scripts/bench``: a raw-socket HTTP/1.1 load generator on trio, process control for
our three-node cluster and a three-member etcd 3.4, the probes (convergence, push, failover, memory,
snapshot load, heartbeat ramp), and the report (table, JSON, plots, docs/benchmarks.md).

Not installed with the project: ``scripts/bench`` puts ``scripts/`` on ``sys.path``.
"""
