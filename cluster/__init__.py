"""The trio runtime: HTTP API, peer links, CLI and client SDK."""
