"""Operator tools: ``distroctl`` and local clusters of ``distro-node`` processes.

    ctl           ``distroctl``: register, deregister, list, services, members, watch, local-cluster
    localcluster  N local nodes that list each other (``distroctl local-cluster``, the integration tests)
    launcher      the one way to start a ``distro-node`` child process (local clusters, the bench, tests)

Nothing is imported here, so importing one submodule never drags in the others.
"""

__all__ = ["ctl", "launcher", "localcluster"]
