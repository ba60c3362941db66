"""Tests for the trio runtime (cluster package)."""
