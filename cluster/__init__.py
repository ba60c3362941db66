"""The trio runtime around the pure core: everything that touches sockets, clocks and processes.

    node     one node process: settings, wiring, the core's pump, peer links (``distro-node``)
    http     a small HTTP/1.1 server on trio
    api      the Nacos v1 HTTP API served on it
    metrics  the one Prometheus text writer
    tools    ``distroctl`` and local clusters of node processes

The SDK is a distribution of its own (``client/``, import name ``distroreg``). docs/design.md draws how a
request flows through these packages.
"""

__all__ = ["api", "http", "metrics", "node", "tools"]
