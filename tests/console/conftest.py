"""Fixtures for the web console's tests: real three-node clusters and a real headless Chromium.

* ``console_cluster`` / ``auth_cluster``: three ``distro-node`` processes started by the project's launcher
  (:class:`cluster.tools.localcluster.LocalCluster`), shared by one test module; the second runs with auth on.
  Instances live for minutes without beats (long heartbeat timeouts), so a test never races an expiry.
* ``browser``: Debian's ``chromium`` driven by selenium through Debian's ``chromedriver`` (scripts/test
  installs both when missing). Without them the browser tests skip, or fail when ``DISTRO_REQUIRE_BROWSER=1``
  (CI). After each test the browser's log must hold no error, so a JavaScript exception, a failed fetch or a
  CSP violation fails the test that caused it.

Every page's screenshot is taken on every run. It goes to the test's temporary folder, and to docs/console/
(which docs/console.md shows) when that file is missing or when ``DISTRO_CONSOLE_SCREENSHOTS=1``: screenshots
differ on every run (ports, uptimes), and rewriting tracked files on each test run would leave every checkout
dirty. Refresh them with ``DISTRO_CONSOLE_SCREENSHOTS=1 scripts/test tests/console``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from cluster.tools.launcher import ClusterError, LocalNode, free_ports
from cluster.tools.localcluster import LocalCluster
from tests import polling

NS = "/nacos/v1/ns"
CONSOLE = "/nacos/v1/console"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "console"
ADMIN_PASSWORD = "console-test-password"
NODE_ARGS = (
    "--heartbeat-timeout-ms", "600000",
    "--instance-expire-ms", "1200000",
    "--ping-interval-ms", "250",
    "--peer-timeout-ms", "1500",
    "--snapshot-timeout-ms", "1500",
)
AUTH_ARGS = ("--auth", "--token-secret", "t" * 48, "--admin-password", ADMIN_PASSWORD)
START_TIMEOUT_S = 40.0
UI_TIMEOUT_S = 15.0

T = TypeVar("T")


def unique(prefix: str) -> str:
    """A service name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(predicate: Callable[[], T], what: str, timeout_s: float = UI_TIMEOUT_S) -> T:
    """Poll ``predicate`` until it returns something truthy (returned); AssertionError at the deadline."""
    return polling.wait_until(predicate, what, timeout_s)


class Registry:
    """A started local cluster plus the Nacos API calls the tests make (httpx, a token when auth is on)."""

    def __init__(self, local: LocalCluster, *, auth: bool) -> None:
        self.local = local
        self.auth = auth
        self.http = httpx.Client(timeout=10.0, trust_env=False)
        self.token: str | None = None
        if auth:
            answer = self.http.post(f"{self.nodes[0].url}/nacos/v1/auth/login",
                                    data={"username": "nacos", "password": ADMIN_PASSWORD})
            assert answer.status_code == 200, answer.text
            self.token = str(answer.json()["accessToken"])

    @property
    def nodes(self) -> list[LocalNode]:
        return self.local.nodes

    def close(self) -> None:
        self.http.close()
        self.local.stop(timeout_s=5.0)

    def call(self, node: LocalNode, method: str, path: str, **params: Any) -> httpx.Response:
        query = {k: v for k, v in params.items() if v is not None}
        if self.token:
            query["accessToken"] = self.token
        return self.http.request(method, f"{node.url}{path}", params=query)

    def ok(self, node: LocalNode, method: str, path: str, **params: Any) -> None:
        answer = self.call(node, method, path, **params)
        assert answer.status_code == 200 and answer.text in ("ok", "true"), (answer.status_code, answer.text)

    def register(self, node: LocalNode, service: str, ip: str, port: int, **params: Any) -> None:
        if isinstance(params.get("metadata"), dict):
            params["metadata"] = json.dumps(params["metadata"])
        self.ok(node, "POST", f"{NS}/instance", serviceName=service, ip=ip, port=port, **params)

    def deregister(self, node: LocalNode, service: str, ip: str, port: int, **params: Any) -> None:
        self.ok(node, "DELETE", f"{NS}/instance", serviceName=service, ip=ip, port=port, **params)

    def hosts(self, node: LocalNode, service: str, **params: Any) -> list[dict[str, Any]]:
        answer = self.call(node, "GET", f"{NS}/instance/list", serviceName=service, **params)
        assert answer.status_code == 200, answer.text
        hosts: list[dict[str, Any]] = answer.json()["hosts"]
        return hosts

    def instance(self, node: LocalNode, service: str, ip: str, port: int, **params: Any) -> dict[str, Any] | None:
        answer = self.call(node, "GET", f"{NS}/instance", serviceName=service, ip=ip, port=port, **params)
        if answer.status_code == 404:
            return None
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def everywhere(self, service: str, count: int, **params: Any) -> None:
        """Wait until every node lists ``count`` instances of ``service``."""
        wait_until(lambda: all(len(self.hosts(n, service, **params)) == count for n in self.nodes),
                   f"{count} instances of {service} on every node")

    def logs(self) -> str:
        return "\n".join(f"===== {n.node_id} {n.address}\n{n.log_tail(60)}" for n in self.nodes)


def start_registry(log_dir: Path, *, auth: bool) -> Registry:
    args = NODE_ARGS + (AUTH_ARGS if auth else ())
    local = LocalCluster(free_ports(3), node_args=args, log_dir=log_dir, hermetic_env=True, die_with_parent=True)
    try:
        local.start_with_retries(START_TIMEOUT_S)
    except ClusterError as exc:
        logs = "\n".join(f"===== {n.node_id}\n{n.log_tail(80)}" for n in local.nodes)
        local.stop()
        pytest.fail(f"cluster did not start: {exc}\n{logs}")
    registry = Registry(local, auth=auth)

    def settled() -> bool:
        for node in registry.nodes:
            servers = registry.call(node, "GET", f"{NS}/operator/servers").json()["servers"]
            if sum(1 for s in servers if s["state"] == "UP") != 3:
                return False
        return True

    wait_until(settled, "every node to see three members up", START_TIMEOUT_S)
    return registry


@pytest.fixture(scope="module")
def console_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    registry = start_registry(tmp_path_factory.mktemp("console-nodes"), auth=False)
    yield registry
    registry.close()


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    registry = start_registry(tmp_path_factory.mktemp("console-auth-nodes"), auth=True)
    yield registry
    registry.close()


# -- the browser ------------------------------------------------------------------------------------------

def browser_binaries() -> tuple[str, str]:
    """Paths of chromium and chromedriver; skip (or fail under DISTRO_REQUIRE_BROWSER=1) when missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    message = ("the console's browser tests need Debian's chromium and chromium-driver "
               "(scripts/test installs them as root: apt-get install -y chromium chromium-driver)")
    if os.environ.get("DISTRO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"DISTRO_REQUIRE_BROWSER=1 but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    from tests.console.driver import Browser

    chromium, driver = browser_binaries()
    refresh = os.environ.get("DISTRO_CONSOLE_SCREENSHOTS") == "1"
    page = Browser.start(chromium, driver, tmp_path / "screenshots", docs=SCREENSHOTS, refresh_docs=refresh)
    try:
        yield page
        if not request.node.get_closest_marker("browser_errors_expected"):
            errors = page.errors()
            assert not errors, "the browser logged errors:\n" + "\n".join(errors)
    finally:
        page.quit()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser_errors_expected: the test provokes failed fetches on purpose (lost connection)"
    )
