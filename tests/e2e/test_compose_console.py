"""The image ships the web console: every node of the compose cluster serves /nacos/ and its modules."""

from __future__ import annotations

import urllib.request

import pytest

from tests.e2e.conftest import ComposeCluster


@pytest.mark.e2e
def test_every_compose_node_serves_the_console(compose_cluster: ComposeCluster) -> None:
    for url in compose_cluster.urls.values():
        with urllib.request.urlopen(f"{url}/nacos/", timeout=5) as page:
            assert page.status == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
            html = page.read().decode()
        assert '<script type="module" src="/nacos/js/app.js">' in html
        with urllib.request.urlopen(f"{url}/nacos/js/pages/services.js", timeout=5) as module:
            assert module.status == 200 and b"catalog/services" in module.read()
