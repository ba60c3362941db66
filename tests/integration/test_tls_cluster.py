"""Two real ``distro-node`` processes with ``--tls-cert-file``/``--tls-key-file``/``--tls-ca-file``: their peer
links run over mutual TLS (certificates from scripts/make-certs) and replicate a registration."""

from __future__ import annotations

from pathlib import Path

import httpx

from cluster.tools.launcher import LocalNode, free_ports
from tests.integration.conftest import NODE_ARGS, NS, wait_until
from tests.tlscerts import make_certs


def _metric(client: httpx.Client, node: LocalNode, name: str) -> float:
    for line in client.get(f"{node.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def test_two_nodes_link_over_mutual_tls_and_replicate(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs", "n1", "n2")
    ports = free_ports(2)
    addresses = [f"127.0.0.1:{port}" for port in ports]
    nodes = [
        LocalNode(
            name,
            port,
            addresses,
            "a cluster secret of some length",
            node_args=(
                *NODE_ARGS,
                "--tls-cert-file",
                certs[name].cert_file,
                "--tls-key-file",
                certs[name].key_file,
                "--tls-ca-file",
                certs[name].ca_file,
            ),
            log_path=tmp_path / f"{name}.log",
            die_with_parent=True,
            hermetic_env=True,
        )
        for name, port in zip(("n1", "n2"), ports, strict=True)
    ]
    with httpx.Client(timeout=5.0) as client:
        try:
            for node in nodes:
                node.start()
            for node in nodes:
                wait_until(lambda node=node: node.is_ready(client), f"{node.node_id} ready")  # type: ignore[misc]
                wait_until(
                    lambda node=node: _metric(client, node, "distro_peer_links_outbound") == 1,  # type: ignore[misc]
                    f"{node.node_id} linked",
                )
            response = client.post(
                f"{nodes[0].url}{NS}/instance",
                params={"serviceName": "tls-svc", "ip": "10.9.9.9", "port": 80},
            )
            assert (response.status_code, response.text) == (200, "ok")

            def replicated() -> bool:
                hosts = client.get(
                    f"{nodes[1].url}{NS}/instance/list", params={"serviceName": "tls-svc"}
                ).json()
                return [h["ip"] for h in hosts["hosts"]] == ["10.9.9.9"]

            wait_until(replicated, "the registration on n2")
            for node in nodes:
                assert "(TLS)" in node.log_text(), node.log_tail()
                assert _metric(client, node, "distro_peer_mac_failures_total") == 0
        finally:
            for node in nodes:
                node.stop(timeout_s=5.0)
