"""The TLS flags and the clock-skew knob of ``distro-node`` (cluster/node/settings.py, cluster/node/tls.py).

TLS files are loaded once while the settings are parsed, so a node with missing, unreadable or
mismatched files refuses to start with a message naming the file, instead of failing its first handshake.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from cluster.node.settings import ConfigError, parse_settings
from cluster.node.tls import TlsFiles, client_context, server_context, tls_files
from tests.tlscerts import make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TlsFiles]:
    return make_certs(tmp_path_factory.mktemp("certs"), "n1", "n2")


def test_the_three_flags_make_the_tls_identity(
    certs: dict[str, TlsFiles], monkeypatch: pytest.MonkeyPatch
) -> None:
    n1 = certs["n1"]
    settings = parse_settings(
        ["--tls-cert-file", n1.cert_file, "--tls-key-file", n1.key_file, "--tls-ca-file", n1.ca_file]
    )
    assert settings.tls == n1
    assert parse_settings([]).tls is None
    monkeypatch.setenv("DISTRO_TLS_CERT_FILE", n1.cert_file)
    monkeypatch.setenv("DISTRO_TLS_KEY_FILE", n1.key_file)
    assert parse_settings([]).tls == TlsFiles(n1.cert_file, n1.key_file)


def test_bad_tls_flags_are_refused(certs: dict[str, TlsFiles], tmp_path: Path) -> None:
    n1, n2 = certs["n1"], certs["n2"]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = {
        "needs both": (["--tls-cert-file", n1.cert_file], "needs both --tls-cert-file and --tls-key-file"),
        "key alone": (["--tls-key-file", n1.key_file], "needs both --tls-cert-file and --tls-key-file"),
        "ca alone": (["--tls-ca-file", n1.ca_file], "--tls-ca-file needs --tls-cert-file"),
        "missing": (
            ["--tls-cert-file", str(tmp_path / "nope.pem"), "--tls-key-file", n1.key_file],
            "nope.pem",
        ),
        "mismatch": (
            ["--tls-cert-file", n1.cert_file, "--tls-key-file", n2.key_file],
            "cannot load the TLS certificate",
        ),
        "bad ca": (
            ["--tls-cert-file", n1.cert_file, "--tls-key-file", n1.key_file, "--tls-ca-file", str(garbage)],
            "cannot load the TLS CA file",
        ),
    }
    for name, (argv, message) in cases.items():
        with pytest.raises(ConfigError) as refused:
            parse_settings(argv)
        assert message in str(refused.value), name


def test_contexts_verify_against_the_ca_only_when_one_is_given(certs: dict[str, TlsFiles]) -> None:
    n1 = certs["n1"]
    with_ca = server_context(n1, require_client_cert=True, alpn=("h2",))
    assert with_ca.verify_mode == ssl.CERT_REQUIRED and with_ca.minimum_version == ssl.TLSVersion.TLSv1_2
    assert server_context(n1).verify_mode == ssl.CERT_NONE  # client HTTP / gRPC: clients bring no certificate
    dialer = client_context(n1)
    assert dialer.verify_mode == ssl.CERT_REQUIRED and not dialer.check_hostname
    no_ca = TlsFiles(n1.cert_file, n1.key_file)
    assert client_context(no_ca).verify_mode == ssl.CERT_NONE
    with pytest.raises(ConfigError):
        server_context(no_ca, require_client_cert=True)
    assert tls_files("", "") is None


def test_the_clock_skew_knob() -> None:
    assert parse_settings([]).core.max_clock_skew_ms == 60_000
    assert parse_settings(["--max-clock-skew-ms", "5000"]).core.max_clock_skew_ms == 5000
    with pytest.raises(ConfigError):
        parse_settings(["--max-clock-skew-ms", "-1"])
