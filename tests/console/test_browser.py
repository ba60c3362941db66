"""The console in a real headless Chromium against a real three-node cluster, clicked through as a person
would: find a service, open it, watch it follow changes without a reload, edit, take offline, deregister,
see the members, create and delete. Each test ends with an empty browser error log (conftest)."""

from __future__ import annotations

import re

import pytest

from tests.console.conftest import NS, Registry, unique, wait_until
from tests.console.driver import Browser

pytestmark = pytest.mark.slow


def console_url(registry: Registry, index: int = 0, route: str = "") -> str:
    return f"{registry.nodes[index].url}/nacos/{route}"


def open_service(browser: Browser, name: str) -> None:
    """From the services page: search for ``name`` and click it, as a person would."""
    search = browser.labelled("Service name")
    search.clear()
    search.send_keys(name)
    browser.button("Search").click()
    # found again and clicked inside the wait: a live redraw may replace the link between finding and clicking
    browser.wait(lambda: browser.link(name).click() or True, f"{name} in the search results")
    browser.wait(lambda: browser.find("#page-service") and browser.shows("Instances"), "the service page")


def instance_rows(browser: Browser, address: str) -> list[object]:
    """The rows of the instance table that show ``address``."""
    return [row for row in browser.find_all("#instances-table tbody tr") if address in row.text]


def test_services_page_lists_services_and_follows_new_ones(console_cluster: Registry, browser: Browser) -> None:
    first, second = unique("orders"), unique("payments")
    registry = console_cluster
    registry.register(registry.nodes[0], first, "10.1.0.1", 8080)
    registry.register(registry.nodes[0], first, "10.1.0.2", 8080, healthy="false")
    registry.everywhere(first, 1, healthyOnly="true")
    browser.open(console_url(registry, 1))
    row = browser.wait(lambda: browser.row_with(first), f"{first} on the services page")
    cells = [c.text for c in row.find_elements("css selector", "td")]
    assert cells[1:6] == ["DEFAULT_GROUP", "1", "2", "1", "no"], cells
    browser.screenshot("services")

    registry.register(registry.nodes[2], second, "10.1.1.1", 9090)
    browser.wait(lambda: browser.shows(second), f"{second} to appear without a reload")
    assert not browser.reloaded()


def test_services_page_pages_and_searches_on_the_server(console_cluster: Registry, browser: Browser) -> None:
    registry = console_cluster
    group = unique("paging").replace("-", "")
    names = [f"svc-{i:02d}" for i in range(25)]
    for name in names:
        registry.ok(registry.nodes[0], "POST", f"{NS}/service", serviceName=name, groupName=group)
    browser.open(console_url(registry, 0, f"#/services?group={group}&size=10"))
    browser.wait(lambda: browser.shows("Page 1 of 3 · 25 services"), "the first of three pages")
    assert browser.shows("svc-00") and not browser.shows("svc-10")
    browser.button("Next").click()
    browser.wait(lambda: browser.shows("Page 2 of 3"), "the second page")
    assert browser.shows("svc-10") and not browser.shows("svc-00")
    search = browser.labelled("Service name")
    search.send_keys("svc-2")
    browser.button("Search").click()
    browser.wait(lambda: browser.shows("Page 1 of 1 · 5 services"), "the search svc-2 (svc-20 .. svc-24)")
    assert not browser.reloaded()


def test_service_page_shows_instances_and_follows_a_deregistration(console_cluster: Registry, browser: Browser) -> None:
    registry = console_cluster
    name = unique("goods")
    registry.register(registry.nodes[0], name, "10.2.0.1", 8080, metadata={"zone": "a"})
    registry.register(registry.nodes[0], name, "10.2.0.2", 8081, clusterName="east", weight="2")
    beat = registry.call(registry.nodes[0], "PUT", f"{NS}/instance/beat", serviceName=name, ip="10.2.0.1", port=8080)
    assert beat.status_code == 200 and beat.json()["code"] == 10200, beat.text
    registry.everywhere(name, 2)
    subscribed = registry.http.get(  # a UDP push subscriber on another node than the page's
        f"{registry.nodes[0].url}{NS}/instance/list",
        params={"serviceName": name, "udpPort": "5353", "clientIP": "10.2.9.9", "app": "checkout"},
        headers={"User-Agent": "Nacos-Java-Client:v1.4.2"})
    assert subscribed.json()["cacheMillis"] == 10000, subscribed.text
    browser.open(console_url(registry, 2))
    open_service(browser, name)
    first = browser.wait(lambda: browser.row_with("10.2.0.1:8080"), "the first instance")
    cells = [c.text for c in first.find_elements("css selector", "td")]
    assert cells[1:7] == ["DEFAULT", "healthy", "1", "yes", "yes", "zone=a"], cells
    browser.wait(lambda: re.fullmatch(r"\d+ s ago", browser.row_with("10.2.0.1:8080").find_elements(
        "css selector", "td")[7].text), "the time since the last beat")
    rows = registry.call(registry.nodes[0], "GET", f"{NS}/service/subscribers", serviceName=name).json()["subscribers"]
    assert len(rows) == 1, rows
    subscriber = browser.wait(lambda: browser.row_with(rows[0]["addrStr"]), "the subscriber, from another node")
    assert [c.text for c in subscriber.find_elements("css selector", "td")] == [
        rows[0]["addrStr"], "Nacos-Java-Client:v1.4.2", "checkout", "udp"]
    second = browser.row_with("10.2.0.2:8081")
    assert "east" in second.text and " 2 " in second.text
    browser.screenshot("service")

    registry.deregister(registry.nodes[1], name, "10.2.0.2", 8081, clusterName="east")
    browser.wait(lambda: not instance_rows(browser, "10.2.0.2:8081"), "the deregistered instance to leave the page")
    assert instance_rows(browser, "10.2.0.1:8080")
    assert not browser.reloaded()


def test_editing_an_instance_weight_reaches_the_api(console_cluster: Registry, browser: Browser) -> None:
    registry = console_cluster
    name = unique("weights")
    registry.register(registry.nodes[0], name, "10.3.0.1", 7000, metadata={"v": "1"})
    registry.everywhere(name, 1)
    browser.open(console_url(registry, 0))
    open_service(browser, name)
    row = browser.wait(lambda: browser.row_with("10.3.0.1:7000"), "the instance")
    browser.button("Edit", row).click()
    editor = browser.wait(lambda: browser.find("form.inline-editor"), "the instance editor")
    weight = browser.labelled("Weight", editor)
    weight.clear()
    weight.send_keys("3.5")
    metadata = browser.labelled("Metadata (JSON object)", editor)
    metadata.clear()
    metadata.send_keys('{"v": "2", "zone": "b"}')
    browser.button("Save", editor).click()
    wait_until(lambda: (registry.instance(registry.nodes[2], name, "10.3.0.1", 7000) or {}).get("weight") == 3.5,
               "weight 3.5 in the API")
    instance = registry.instance(registry.nodes[2], name, "10.3.0.1", 7000)
    assert instance is not None and instance["metadata"] == {"v": "2", "zone": "b"} and instance["enabled"] is True
    browser.wait(lambda: "3.5" in browser.row_with("10.3.0.1:7000").text, "the new weight on the page")


def test_offline_online_and_deregister_buttons(console_cluster: Registry, browser: Browser) -> None:
    registry = console_cluster
    name = unique("offline")
    registry.register(registry.nodes[0], name, "10.4.0.1", 7000)
    registry.register(registry.nodes[0], name, "10.4.0.2", 7000)
    registry.everywhere(name, 2)
    browser.open(console_url(registry, 1))
    open_service(browser, name)
    browser.click_in_row("10.4.0.1:7000", "Take offline")
    wait_until(lambda: (registry.instance(registry.nodes[0], name, "10.4.0.1", 7000) or {}).get("enabled") is False,
               "the instance disabled in the API")
    browser.wait(lambda: "offline" in browser.row_with("10.4.0.1:7000").text, "the instance shown offline")
    browser.click_in_row("10.4.0.1:7000", "Bring online")
    wait_until(lambda: (registry.instance(registry.nodes[0], name, "10.4.0.1", 7000) or {}).get("enabled") is True,
               "the instance enabled again")
    browser.wait(lambda: "Take offline" in browser.row_with("10.4.0.1:7000").text, "the instance shown online")

    browser.click_in_row("10.4.0.2:7000", "Deregister")
    browser.click_in_row("10.4.0.2:7000", "Yes")
    registry.everywhere(name, 1)
    browser.wait(lambda: not instance_rows(browser, "10.4.0.2:7000"), "the deregistered instance to leave the table")


def test_create_edit_and_delete_a_service(console_cluster: Registry, browser: Browser) -> None:
    registry = console_cluster
    name = unique("created")
    browser.open(console_url(registry, 0))
    browser.wait(lambda: browser.button("Create service"), "the services page").click()
    form = browser.find("#create-service")
    browser.labelled("Name", form).send_keys(name)
    threshold = browser.labelled("Protect threshold (0 to 1)", form)
    threshold.clear()
    threshold.send_keys("0.5")
    browser.labelled("Metadata (JSON object)", form).send_keys('{"team": "core"}')
    browser.button("Create", form).click()
    wait_until(lambda: registry.call(registry.nodes[2], "GET", f"{NS}/service", serviceName=name).status_code == 200,
               "the created service in the API")
    service = registry.call(registry.nodes[2], "GET", f"{NS}/service", serviceName=name).json()
    assert service["protectThreshold"] == 0.5 and service["metadata"] == {"team": "core"}

    open_service(browser, name)
    settings = browser.wait(lambda: browser.find("#service-settings form"), "the settings form")
    threshold = browser.labelled("Protect threshold (0 to 1)", settings)
    threshold.clear()
    threshold.send_keys("0.8")
    browser.button("Save settings").click()
    wait_until(lambda: registry.call(registry.nodes[1], "GET", f"{NS}/service", serviceName=name).json()
               .get("protectThreshold") == 0.8, "the new protect threshold in the API")

    browser.button("Delete service").click()
    browser.button("Yes").click()
    wait_until(lambda: registry.call(registry.nodes[1], "GET", f"{NS}/service", serviceName=name).status_code == 404,
               "the service deleted in the API")
    browser.wait(lambda: browser.find("#page-services"), "back on the services page")


def test_cluster_metadata_is_edited_on_the_service_page(console_cluster: Registry, browser: Browser) -> None:
    registry = console_cluster
    name = unique("clusters")
    registry.register(registry.nodes[0], name, "10.13.0.1", 80, clusterName="west")
    registry.everywhere(name, 1)
    browser.open(console_url(registry, 2))
    open_service(browser, name)
    browser.click_in_row("west", "Edit")
    editor = browser.wait(lambda: browser.find("#clusters form.inline-editor"), "the cluster editor")
    metadata = browser.labelled("Metadata (JSON object)", editor)
    metadata.clear()
    metadata.send_keys('{"zone": "west-1"}')
    browser.button("Save cluster", editor).click()

    def cluster_metadata() -> object:
        detail = registry.call(registry.nodes[1], "GET", f"{NS}/catalog/service", serviceName=name).json()
        return next(c["metadata"] for c in detail["clusters"] if c["name"] == "west")

    wait_until(lambda: cluster_metadata() == {"zone": "west-1"}, "the cluster metadata in the API")
    browser.wait(lambda: "zone=west-1" in browser.row_with("west").text, "the cluster metadata on the page")


def test_cluster_page_shows_the_three_members(console_cluster: Registry, browser: Browser) -> None:
    registry = console_cluster
    browser.open(console_url(registry, 0))
    browser.wait(lambda: browser.link("Cluster"), "the navigation").click()
    rows = browser.wait(lambda: len(browser.find_all("#members-table tbody tr")) == 3
                        and browser.find_all("#members-table tbody tr"), "three members")
    text = "\n".join(row.text for row in rows)
    for node in registry.nodes:
        assert node.address in text and node.node_id in text
    browser.wait(lambda: all("sending, hearing" in r.text for r in browser.find_all("#members-table tbody tr")[1:]),
                 "both peer links up to each peer")
    assert "this node" in rows[0].text and text.count("0.1.0") == 3
    browser.wait(lambda: browser.shows("3 nodes: 3 up, 3 ready"), "the summary")
    assert len(re.findall(r"\b(\d+ s|\d+ min \d+ s)\b", text)) >= 3  # three uptimes

    service = unique("owned")
    registry.register(registry.nodes[0], service, "10.5.0.1", 80)
    owner = registry.call(registry.nodes[0], "GET", f"{NS}/operator/distro/server", serviceName=service).json()
    form = browser.find("#owner-lookup")
    browser.labelled("Service", form).send_keys(service)
    browser.button("Look up", form).click()
    browser.wait(lambda: f"is owned by {owner['responsibleServer']}" in browser.text(), "the owner")
    browser.screenshot("cluster")


def test_namespaces_page_creates_edits_and_deletes(console_cluster: Registry, browser: Browser) -> None:
    registry = console_cluster
    namespace_id = unique("dev")
    browser.open(console_url(registry, 1))
    browser.wait(lambda: browser.link("Namespaces"), "the navigation").click()
    form = browser.wait(lambda: browser.find("#create-namespace"), "the namespaces page")
    browser.labelled("ID", form).send_keys(namespace_id)
    browser.labelled("Name", form).send_keys("Development")
    browser.labelled("Description", form).send_keys("for the developers")
    browser.button("Create", form).click()
    browser.wait(lambda: namespace_id in browser.row_with("Development").text, "the new namespace in the list")

    def listed(node_index: int) -> dict[str, object] | None:
        rows = registry.call(registry.nodes[node_index], "GET", "/nacos/v1/console/namespaces").json()["data"]
        return next((r for r in rows if r["namespace"] == namespace_id), None)

    wait_until(lambda: listed(2), "the namespace on another node")
    browser.screenshot("namespaces")
    browser.labelled("ID", form).send_keys(namespace_id)  # the same id again: refused, and the page says so
    browser.labelled("Name", form).send_keys("Again")
    browser.button("Create", form).click()
    browser.wait(lambda: "is taken or not allowed" in browser.text(), "the refusal of a taken id")
    browser.click_in_row(namespace_id, "Edit")
    editor = browser.wait(lambda: browser.find("#page-namespaces form.inline-editor"), "the namespace editor")
    name = browser.labelled("Name", editor)
    name.clear()
    name.send_keys("Dev")
    browser.button("Save", editor).click()
    wait_until(lambda: (listed(0) or {}).get("namespaceShowName") == "Dev", "the new name in the API")

    registry.register(registry.nodes[0], unique("in-dev"), "10.7.0.1", 80, namespaceId=namespace_id)
    browser.wait(lambda: browser.link("Dev"), "the new name on the page").click()
    browser.wait(lambda: browser.find("#page-services") and browser.shows("in-dev-"), "the namespace's services")
    browser.link("Namespaces").click()
    browser.click_in_row(namespace_id, "Delete")
    browser.click_in_row(namespace_id, "Yes")
    wait_until(lambda: listed(1) is None, "the namespace deleted in the API")
    browser.wait(lambda: not browser.shows(namespace_id), "the namespace gone from the page")


@pytest.mark.browser_errors_expected
def test_a_lost_connection_shows_a_banner_and_reconnects(console_cluster: Registry, browser: Browser) -> None:
    registry = console_cluster
    node = registry.nodes[2]
    name = unique("reconnect")
    browser.open(console_url(registry, 2))
    browser.wait(lambda: browser.find_all("#services-table") or browser.shows("No service"), "the services page")
    banner = browser.find("#connection-banner")
    assert not banner.is_displayed()
    node.stop()
    try:
        browser.wait(lambda: banner.is_displayed() and "Lost the connection" in banner.text, "the banner")
        registry.register(registry.nodes[0], name, "10.6.0.1", 80)
    finally:
        node.start()
    wait_until(lambda: registry.call(node, "GET", "/readyz").status_code == 200, "the node to come back", 40)
    browser.wait(lambda: not banner.is_displayed(), "the banner to go away", 30)
    browser.wait(lambda: browser.shows(name), "the page to catch up with what happened meanwhile")
    assert not browser.reloaded()
    errors = browser.errors()
    expected = ("net::ERR_", "status of 503")  # refused or cut off while down, then starting
    assert errors and all(any(text in e for text in expected) for e in errors), errors
