"""``scripts/simulate``: one seeded, simulated fault schedule of the core (``distro.testing``), then its checks.

Not installed with the project: ``scripts/simulate`` puts ``scripts/`` (and the repository root) on ``sys.path``.
"""
