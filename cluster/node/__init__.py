"""The node runtime: one ``distro-node`` process around the pure core (``distro.node.DistroNode``).

    settings   NodeSettings and the flag/env parsing of ``distro-node``
    main       the ``distro-node`` entry point (signals, logging, GC settings)
    wiring     NodeServer: the runtime, the Nacos HTTP API and the peer transport of one node
    pump       NodeRuntime: feeds the core its inputs and carries its effects out
    peerlink   authenticated peer links (msgpack frames over TCP)
    memlink    an in-memory peer transport for tests
    listeners  the one place that opens listening TCP sockets
    gctune     garbage-collector settings of a node process
    stallwatch logs task steps that hold the event loop too long (DISTRO_STALL_LOG_MS)

Nothing is imported here, so importing one submodule never drags in the others.
"""

__all__ = ["gctune", "listeners", "main", "memlink", "peerlink", "pump", "settings", "stallwatch", "wiring"]
