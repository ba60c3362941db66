"""The console on a cluster with auth on: a login page with a password field, a token kept in the tab's
sessionStorage (never in a cookie) and sent as ``accessToken``, and log out."""

from __future__ import annotations

import httpx
import pytest

from tests.console.conftest import ADMIN_PASSWORD, CONSOLE, Registry, unique
from tests.console.driver import Browser
from tests.console.test_browser import console_url

pytestmark = pytest.mark.slow

TOKEN_KEY = "distro.console.token"


def password_fields(browser: Browser) -> list[object]:
    return [f for f in browser.find_all("input[type=password]") if f.is_displayed()]


def test_login_then_logout(auth_cluster: Registry, browser: Browser) -> None:
    registry = auth_cluster
    name = unique("secured")
    registry.register(registry.nodes[0], name, "10.8.0.1", 80)
    browser.open(console_url(registry, 1))
    browser.wait(lambda: password_fields(browser), "a password field")
    assert not browser.shows(name)
    browser.screenshot("login")

    browser.labelled("User name").clear()
    browser.labelled("User name").send_keys("nacos")
    browser.labelled("Password").send_keys(ADMIN_PASSWORD)
    browser.button("Log in").click()
    browser.wait(lambda: not password_fields(browser), "the password field to go away")
    browser.wait(lambda: browser.shows(name), "the services after logging in")
    assert browser.driver.get_cookies() == []
    assert browser.driver.execute_script(f"return sessionStorage.getItem('{TOKEN_KEY}')")

    browser.button("Log out").click()
    browser.wait(lambda: password_fields(browser), "the password field after logging out")
    assert browser.driver.execute_script(f"return sessionStorage.getItem('{TOKEN_KEY}')") is None
    assert not browser.shows(name)


@pytest.mark.browser_errors_expected
def test_a_wrong_password_is_refused(auth_cluster: Registry, browser: Browser) -> None:
    browser.open(console_url(auth_cluster, 0))
    browser.wait(lambda: password_fields(browser), "a password field")
    browser.labelled("User name").send_keys("nacos")
    browser.labelled("Password").send_keys("not-the-password")
    browser.button("Log in").click()
    browser.wait(lambda: browser.shows("Wrong user name or password."), "the refusal")
    assert password_fields(browser)
    errors = browser.errors()
    assert errors and all("status of 403" in e for e in errors), errors


@pytest.mark.browser_errors_expected
def test_a_refused_token_goes_back_to_the_login_page(auth_cluster: Registry, browser: Browser) -> None:
    browser.open(console_url(auth_cluster, 0))
    browser.wait(lambda: password_fields(browser), "a password field")
    browser.driver.execute_script(f"sessionStorage.setItem('{TOKEN_KEY}', 'forged.token')")
    browser.open(console_url(auth_cluster, 0, "#/cluster"))
    browser.wait(lambda: password_fields(browser), "the login page again after the token was refused")
    assert browser.driver.execute_script(f"return sessionStorage.getItem('{TOKEN_KEY}')") is None
    errors = browser.errors()
    assert errors and all("status of 403" in e for e in errors), errors


def test_with_auth_on_the_files_and_server_state_need_no_token_but_data_does(auth_cluster: Registry) -> None:
    node = auth_cluster.nodes[2]
    with httpx.Client(trust_env=False) as http:
        assert http.get(f"{node.url}/nacos/").status_code == 200
        assert http.get(f"{node.url}/nacos/js/app.js").status_code == 200
        state = http.get(f"{node.url}{CONSOLE}/server/state").json()
        assert state["auth_enabled"] == "true" and state["nodeId"] == "n3"
        for path in ("changes", "cluster", "node", "beats?serviceName=x"):
            refused = http.get(f"{node.url}{CONSOLE}/{path}")
            assert (refused.status_code, refused.text) == (403, "user not found!"), path
    assert auth_cluster.call(node, "GET", f"{CONSOLE}/cluster").status_code == 200
