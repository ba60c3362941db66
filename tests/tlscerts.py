"""Test certificates made by scripts/make-certs (the openssl CLI): a CA and one certificate per name."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cluster.node.tls import TlsFiles

MAKE_CERTS = Path(__file__).resolve().parent.parent / "scripts" / "make-certs"


def make_certs(directory: Path, *names: str) -> dict[str, TlsFiles]:
    """A CA in ``directory`` (reused if there) and a certificate for each name, as TlsFiles with the CA."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    subprocess.run([str(MAKE_CERTS), str(directory), *names], check=True, capture_output=True, timeout=60)
    ca = str(directory / "ca.pem")
    return {
        name: TlsFiles(str(directory / f"{name}.pem"), str(directory / f"{name}.key"), ca) for name in names
    }
