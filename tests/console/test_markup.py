"""Names and metadata are text, never markup: data full of HTML and script stays inert in the console.

The registry accepts any text in metadata (instances, services, clusters), in a subscriber's app name, and in
namespace names and descriptions. Each is registered here with markup that would run script or add an
element if it were ever parsed as HTML; the pages must show it literally, run nothing (no alert, no
``window.__xss`` set) and contain no element the data tried to inject."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.console.conftest import CONSOLE, NS, Registry, unique, wait_until
from tests.console.driver import Browser
from tests.console.test_browser import console_url, open_service

pytestmark = pytest.mark.slow

IMG = '<img src=x onerror="window.__xss=1;alert(1)">'
SCRIPT = "<script>window.__xss=2;alert(2)</script>"
SVG = '<svg onload="window.__xss=3"><b id="injected">bold</b></svg>'
LINK = '<a id="injected-link" href="javascript:window.__xss=4">click</a>'


def assert_inert(browser: Browser) -> None:
    assert not browser.alert_open(), "an alert opened: markup from the data ran"
    assert browser.driver.execute_script("return window.__xss === undefined")
    for css in ("img", "script:not([type=module])", "svg:not(:root)", "#injected", "#injected-link", "b#injected"):
        assert browser.find_all(f"main {css}") == [], f"an element from the data got into the page: {css}"


def test_markup_in_metadata_and_subscribers_stays_text(console_cluster: Registry, browser: Browser) -> None:
    registry = console_cluster
    name = unique("markup")
    node = registry.nodes[0]
    registry.register(node, name, "10.9.0.1", 80, metadata={"img": IMG, SCRIPT: SVG})
    registry.ok(node, "PUT", f"{NS}/service", serviceName=name, protectThreshold="0", metadata=json.dumps({"link": LINK}))
    with httpx.Client(trust_env=False) as http:
        listed = http.get(f"{registry.nodes[1].url}{NS}/instance/list",
                          params={"serviceName": name, "udpPort": "5353", "clientIP": "127.0.0.1",
                                  "app": f"{IMG} {SCRIPT}"},
                          headers={"User-Agent": "Nacos-Java-Client:v1.4.2"})
        assert listed.status_code == 200 and listed.json()["cacheMillis"] == 10000  # a push subscriber
    registry.everywhere(name, 1)

    browser.open(console_url(registry, 1))
    open_service(browser, name)
    browser.wait(lambda: IMG in browser.text() and SCRIPT in browser.text() and SVG in browser.text(),
                 "the instance metadata shown as text")
    browser.wait(lambda: json.loads(browser.find("#service-metadata").get_attribute("value") or "{}").get("link") == LINK,
                 "the service metadata in its editor")
    browser.wait(lambda: browser.find_all("#subscribers-table") and f"{IMG} {SCRIPT}" in browser.find("#subscribers").text,
                 "the subscriber's app shown as text")
    assert_inert(browser)


def test_markup_in_namespaces_stays_text(console_cluster: Registry, browser: Browser) -> None:
    registry = console_cluster
    namespace_id = unique("ns-markup")
    answer = registry.call(registry.nodes[0], "POST", f"{CONSOLE}/namespaces", customNamespaceId=namespace_id,
                           namespaceName=IMG, namespaceDesc=SCRIPT)
    assert answer.status_code == 200, answer.text
    wait_until(lambda: namespace_id in registry.call(registry.nodes[2], "GET", f"{CONSOLE}/namespaces").text,
               "the namespace on every node")
    browser.open(console_url(registry, 2, "#/namespaces"))
    browser.wait(lambda: IMG in browser.text() and SCRIPT in browser.text(), "the namespace shown as text")
    assert_inert(browser)
    browser.open(console_url(registry, 2, "#/services"))
    browser.wait(lambda: any(IMG in o.text for o in browser.find_all("#namespace-select option")),
                 "the namespace in the switcher, as text")
    assert_inert(browser)
