"""nacos-sdk-python 0.1.17 constructed with a username and password against a real node without auth
(issue 12): its constructor logs in (and raises when that fails); the node answers a token for any
credentials, so the client registers, lists, beats and deregisters as usual."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cluster.tools.launcher import LocalNode

nacos = pytest.importorskip("nacos")

pytestmark = pytest.mark.slow


def test_sdk_with_credentials_against_an_auth_off_node(open_node: LocalNode, tmp_path: Path) -> None:
    logging.getLogger("nacos").setLevel(logging.WARNING)
    client = nacos.NacosClient(open_node.address, username="nacos", password="nacos", logDir=str(tmp_path))
    assert client.token  # the constructor's login answered
    assert client.add_naming_instance("conf-sdk-login", "10.9.9.1", 8080, metadata={"k": "v"}) is True
    hosts = client.list_naming_instance("conf-sdk-login")["hosts"]
    assert [(h["ip"], h["port"], h["metadata"]) for h in hosts] == [("10.9.9.1", 8080, {"k": "v"})]
    assert client.send_heartbeat("conf-sdk-login", "10.9.9.1", 8080)["code"] == 10200
    assert client.remove_naming_instance("conf-sdk-login", "10.9.9.1", 8080) is True
    assert client.list_naming_instance("conf-sdk-login")["hosts"] == []
