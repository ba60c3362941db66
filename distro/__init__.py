"""Distro: the pure core of the registry (no IO). See docs/design.md."""
