"""The benchmark behind ``scripts/bench``: a raw-socket HTTP/1.1 load generator on trio, process control for
our three-node cluster and a three-member etcd 3.4, the probes (convergence, push, failover, memory,
snapshot load, heartbeat ramp), and the report (table, JSON, plots, docs/benchmarks.md); and
``httpbench``, the wrk benchmark of ``cluster.http`` behind ``scripts/bench_http``.

Not installed with the project: ``scripts/bench`` and ``scripts/bench_http`` put ``scripts/`` on ``sys.path``.
"""
