"""The one "not ready" rule and text (:mod:`distro.readiness`).

Proves: the text is Nacos's, missing space included; only naming reads (GET under ``/nacos/v1/ns/``) are
refused while starting, never operator routes, writes, or paths outside the naming API; a starting node
with no ready peer answers a write with exactly :data:`~distro.readiness.NOT_READY`.
"""

from __future__ import annotations

import pytest

from distro.config import DistroConfig
from distro.model import make_instance, service_key
from distro.node import DistroNode
from distro.readiness import NOT_READY, NOT_READY_DETAIL_TEXT, NOT_READY_TEXT, refuses_while_starting
from distro.requests import Register, Result


def test_texts_are_nacos_texts() -> None:
    assert NOT_READY_TEXT == "server is STARTINGnow, please try again later!"
    assert NOT_READY_DETAIL_TEXT == "server is STARTINGnow, detailed error message: snapshot not loaded yet"
    assert Result(503, NOT_READY_TEXT) == NOT_READY


@pytest.mark.parametrize(
    ("method", "path", "refused"),
    [
        ("GET", "/nacos/v1/ns/instance/list", True),
        ("GET", "/nacos/v1/ns/service/list", True),
        ("GET", "/nacos/v1/ns/operator/servers", False),
        ("GET", "/nacos/v1/ns/operator/metrics", False),
        ("POST", "/nacos/v1/ns/instance", False),
        ("PUT", "/nacos/v1/ns/instance/beat", False),
        ("DELETE", "/nacos/v1/ns/instance", False),
        ("GET", "/readyz", False),
        ("GET", "/metrics", False),
        ("POST", "/nacos/v1/auth/login", False),
        # issue 14, finding 5: the method in any case, and HEAD (a GET without the body) too
        ("get", "/nacos/v1/ns/instance/list", True),
        ("HEAD", "/nacos/v1/ns/instance/list", True),
        ("head", "/nacos/v1/ns/service", True),
        ("post", "/nacos/v1/ns/instance", False),
        # the namespaces list is cluster data a starting node may not hold yet (a wiped folder): gated too
        ("GET", "/nacos/v1/console/namespaces", True),
        ("get", "/nacos/v1/console/namespaces/", True),
        ("HEAD", "/nacos/v1/console/namespaces", True),
        ("POST", "/nacos/v1/console/namespaces", False),
        ("DELETE", "/nacos/v1/console/namespaces", False),
        ("GET", "/nacos/v1/console/health/readiness", False),
        ("GET", "/nacos/v1/console/health/liveness", False),
        ("GET", "/nacos/v1/console/node", False),
    ],
)
def test_only_naming_reads_are_refused(method: str, path: str, refused: bool) -> None:
    assert refuses_while_starting(method, path) is refused


def test_a_starting_node_with_no_owner_answers_not_ready() -> None:
    node = DistroNode("n1", DistroConfig(cluster_size=3), 0, peers=["n2", "n3"])
    request = Register(service_key(None, None, "svc"), make_instance("10.0.0.1", 8080))
    assert node.handle_client(1, request, 10) == NOT_READY
