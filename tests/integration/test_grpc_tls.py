"""A real ``distro-node`` process with ``--grpc-tls``: nacos-sdk-python 3.x, an outside client, registers, lists
and deregisters over TLS (its TLSConfig: grpcio's secure channel, verifying the node against the CA made by
scripts/make-certs, ALPN h2); a plaintext HTTP/2 client on the same port is closed without an answer, counted,
and the node stays healthy."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from cluster.tools.launcher import LocalNode, free_ports
from tests.grpc.outside import Nacos3Client, poll
from tests.integration.conftest import NODE_ARGS, NS, START_TIMEOUT_S, unique
from tests.polling import wait_until
from tests.tlscerts import make_certs

pytestmark = pytest.mark.slow

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + an empty SETTINGS frame


def tls_failures(client: httpx.Client, node: LocalNode) -> dict[str, float]:
    out = {}
    for line in client.get(f"{node.url}/metrics").text.splitlines():
        if line.startswith("distro_grpc_tls_handshake_failures_total{"):
            labels, value = line.split(" ")
            out[labels.split('"')[1]] = float(value)
    return out


def plaintext_h2_answer(port: int, timeout_s: float = 20.0) -> bytes:
    """What a prior-knowledge HTTP/2 client (gRPC's insecure channel) receives from ``port`` until it is closed."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(H2_PREFACE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
        else:
            raise AssertionError(f"the TLS gRPC port kept a plaintext client open for {timeout_s:g} s")
    return received


def test_python_sdk_3_over_tls_and_plaintext_refused(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs", "n1")["n1"]
    [port] = free_ports(1)
    node = LocalNode(
        "n1", port, [f"127.0.0.1:{port}"], "a cluster secret of some length",
        node_args=(*NODE_ARGS, "--grpc-tls", "--tls-cert-file", certs.cert_file, "--tls-key-file", certs.key_file),
        log_path=tmp_path / "n1.log", die_with_parent=True, hermetic_env=True,
    )
    service = unique("tls")
    with httpx.Client(timeout=5.0) as http:
        node.start()
        sdk: Nacos3Client | None = None
        try:
            wait_until(lambda: node.is_ready(http), "n1 ready", timeout_s=START_TIMEOUT_S)
            assert f"gRPC on port {node.grpc_port} (TLS)" in node.log_text()
            sdk = Nacos3Client([node.address], tmp_path / "py3", tls=(certs.ca_file, certs.cert_file, certs.key_file))
            assert sdk.call("register", service=service, ip="10.7.0.1", port=8080) is True

            def listed() -> list[str]:
                hosts = http.get(f"{node.url}{NS}/instance/list", params={"serviceName": service}).json()["hosts"]
                return [h["ip"] for h in hosts]

            poll(lambda: listed() == ["10.7.0.1"], "the instance registered over TLS, listed over v1")
            assert [h["ip"] for h in sdk.call("list", service=service)] == ["10.7.0.1"]

            answer = plaintext_h2_answer(node.grpc_port)
            assert answer[:1] in (b"", b"\x15")  # nothing, or a TLS alert: never an HTTP/2 frame
            wait_until(lambda: tls_failures(http, node) == {"error": 1, "timeout": 0}, "the refusal counted")
            assert node.is_ready(http) and node.running()
            assert sdk.call("deregister", service=service, ip="10.7.0.1", port=8080) is True
            poll(lambda: listed() == [], "the deregistration over TLS")
        finally:
            if sdk is not None:
                sdk.close()
            node.stop(timeout_s=5.0)
