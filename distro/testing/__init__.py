"""Simulator and checkers shipped with the core, for tests and scripts/simulate."""
