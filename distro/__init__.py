"""Distro: the pure core of the registry. No IO, no clock, no randomness: time arrives as ``now_ms`` and
every output is an effect that the runtime (``cluster/``) carries out. See docs/design.md.

    node         DistroNode: one node's state machine (its inputs, outputs and rules)
     membership  peers, who is up, what /operator/servers shows
     ownership   rendezvous hashing: which live member owns a service key
     writes      what each client request means (Nacos's checks and texts)
     replication per-peer dirty sets, SyncBatch flushes, anti-entropy digests
     snapshot    the start-up snapshot: loading one, serving ours
     health      the owner's heartbeat clocks and the health check
     beats       beats answered from the replica, and the receipts that renew them on their owners
     notifier    changed keys and the read views swapped in for them
     connections gRPC connections held here and the instances bound to them
     clusterwrites  cluster settings and namespaces (cluster data) as the owner writes them
     durability  which entries go to disk, and answers that wait until they are there
     cleaner     the empty-service cleaner (services a registration created, removed once empty)
     readiness   the one "not ready" rule and Nacos's STARTINGnow text
    config       DistroConfig: every timing and bound of the core
    model        service keys, instances, service metadata and Nacos's validation
     sharing     one shared copy of the values instances repeat (cluster names, ports, metadata...)
    clusterdata  cluster data: namespaces, service and cluster settings, and where they live
    requests     client requests the core accepts, and its results
    messages     peer messages; codec turns them into plain structures for the wire (and checks them)
    effects      what the core asks its runtime to do (Send, ClientReply, ServiceChanged, LifecycleEvent, Persist)
    datum, store versioned entries per key, their digests and tombstone collection
    versions     hybrid logical clock versions
    views        immutable read views of a service
    catalog      every namespace's services in name order, with per-service counts (the catalog routes)
    errors       the one exception tree (DistroError and its subclasses), drawn in its docstring
    testing      a hand-driven harness, a deterministic simulator and its checkers

Nothing is imported here, so importing one submodule never drags in the others.
"""

__all__ = [
    "beats",
    "catalog",
    "cleaner",
    "clusterdata",
    "clusterwrites",
    "codec",
    "config",
    "connections",
    "datum",
    "durability",
    "effects",
    "errors",
    "health",
    "membership",
    "messages",
    "model",
    "node",
    "notifier",
    "ownership",
    "readiness",
    "replication",
    "requests",
    "sharing",
    "snapshot",
    "store",
    "testing",
    "versions",
    "views",
    "writes",
]
