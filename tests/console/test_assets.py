"""The console's static files and change feed, without a browser: what is served and how (content types,
CSP, nosniff, ETags, no path traversal), that the wheel ships every file, that no script ever parses data
as HTML, that every ES module import resolves, and the change feed's answers."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest
import trio

from cluster.console.assets import CONTENT_SECURITY_POLICY, StaticAssets, package_files
from cluster.console.feed import ChangeFeed
from cluster.http import Request
from distro.model import ServiceKey, service_key
from distro.views import empty_view

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "cluster" / "console" / "static"


def get(path: str, query: str = "", **headers: str) -> Request:
    return Request("GET", path, query, {k.replace("_", "-"): v for k, v in headers.items()}, b"", ("127.0.0.1", 1))


@pytest.fixture(scope="module")
def assets() -> StaticAssets:
    return StaticAssets.from_package()


def test_index_and_modules_have_their_content_types_and_security_headers(assets: StaticAssets) -> None:
    expected = {
        "/nacos/": "text/html; charset=utf-8",
        "/nacos/index.html": "text/html; charset=utf-8",
        "/nacos/js/app.js": "text/javascript; charset=utf-8",
        "/nacos/js/pages/services.js": "text/javascript; charset=utf-8",
        "/nacos/console.css": "text/css; charset=utf-8",
        "/nacos/favicon.svg": "image/svg+xml",
    }
    for path, content_type in expected.items():
        assert assets.handles("GET", path) and assets.handles("HEAD", path)
        response = assets.respond(get(path))
        headers = dict(response.headers or [])
        assert (response.status, response.content_type) == (200, content_type), path
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert headers["Cache-Control"] == "no-cache" and re.fullmatch(r'"[0-9a-f]{24}"', headers["ETag"])
    assert assets.respond(get("/nacos/")).body == (STATIC / "index.html").read_bytes()


def test_the_policy_allows_no_inline_script_or_style_and_no_other_origin() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'", name
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    assert directives["frame-ancestors"] == "'none'"


def test_a_matching_etag_gets_a_304_and_another_a_200(assets: StaticAssets) -> None:
    etag = dict(assets.respond(get("/nacos/js/app.js")).headers or [])["ETag"]
    assert assets.respond(get("/nacos/js/app.js", if_none_match=etag)).status == 304
    assert assets.respond(get("/nacos/js/app.js", if_none_match=f'W/{etag}, "x"')).status == 304
    assert assets.respond(get("/nacos/js/app.js", if_none_match='"other"')).status == 200


def test_nacos_without_a_slash_redirects_to_the_console(assets: StaticAssets) -> None:
    response = assets.respond(get("/nacos", "x=1"))
    assert response.status == 302 and ("Location", "/nacos/?x=1") in (response.headers or [])


@pytest.mark.parametrize("path", [
    "/nacos/../pyproject.toml", "/nacos/js/../../assets.py", "/nacos/%2e%2e/assets.py", "/nacos/js/",
    "/nacos//index.html", "/nacos/index.html/", "/nacos/assets.py", "/nacos/__init__.py", "/nacos/static/index.html",
    "/nacos/js/app.js\x00.html", "/nacos/JS/APP.JS", "/nacos/v1/ns/instance/list", "/etc/passwd",
])
def test_only_the_shipped_files_are_served(assets: StaticAssets, path: str) -> None:
    assert not assets.handles("GET", path)
    assert assets.respond(get(path)).status == 404


def test_only_get_and_head(assets: StaticAssets) -> None:
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        assert not assets.handles(method, "/nacos/index.html")


def test_the_wheel_ships_every_static_file() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["cluster.console"]
    files = [p.relative_to(STATIC.parent).as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatchcase(f, g) and f.count("/") == g.count("/") for g in globs)]
    assert missing == [], f"not in pyproject's package-data: {missing}"
    assert sorted(package_files()) == sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file())


def scripts() -> list[Path]:
    return sorted(STATIC.rglob("*.js"))


def test_no_script_parses_data_as_html() -> None:
    forbidden = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
                           r"setTimeout\(['\"`]|DOMParser|createContextualFragment|srcdoc")
    found = [f"{p.name}: {m.group(0)}" for p in scripts() for m in forbidden.finditer(p.read_text())]
    assert found == []


def test_the_page_has_no_inline_script_or_style() -> None:
    html = (STATIC / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", html) == ['<script type="module" src="/nacos/js/app.js">']
    assert re.search(r"<script[^>]*>(?!</script>)", html) is None
    assert re.search(r"\sstyle=|\son[a-z]+=|<style", html) is None


def test_the_page_preloads_every_module() -> None:
    html = (STATIC / "index.html").read_text()
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/nacos/([^"]+)">', html))
    assert preloaded == {p.relative_to(STATIC).as_posix() for p in scripts()} - {"js/app.js"}


def test_every_module_import_resolves() -> None:
    importer = re.compile(r"^import\s.*?from\s+'([^']+)';", re.MULTILINE | re.DOTALL)
    for path in scripts():
        for target in importer.findall(path.read_text()):
            assert target.startswith("./") or target.startswith("../"), (path.name, target)
            assert (path.parent / target).resolve().is_file(), f"{path.name} imports a missing {target}"
            names = re.search(rf"import\s*\{{([^}}]*)\}}\s*from\s+'{re.escape(target)}'", path.read_text())
            if names:
                exported = (path.parent / target).resolve().read_text()
                for name in (n.strip() for n in names.group(1).split(",") if n.strip()):
                    assert re.search(rf"export (async )?(function|class|const|let) {name}\b", exported), \
                        f"{path.name} imports {name}, which {target} does not export"


KEY_A = service_key(None, None, "a")
KEY_B = service_key("dev", "g", "b")


def test_the_feed_lists_the_services_changed_since_a_revision() -> None:
    feed = ChangeFeed(remembered=4)
    first = feed.answer(None, None)
    assert first["complete"] is False and first["revision"] == 0 and first["changes"] == []
    feed.on_change(KEY_A, empty_view(KEY_A))
    feed.on_change(KEY_B, empty_view(KEY_B))
    feed.on_change(KEY_A, empty_view(KEY_A))
    answer = feed.answer(first["feed"], 0)
    assert answer["revision"] == 3 and answer["complete"] is True
    assert answer["changes"] == [
        {"namespaceId": "dev", "groupName": "g", "serviceName": "b"},
        {"namespaceId": "public", "groupName": "DEFAULT_GROUP", "serviceName": "a"},
    ]
    assert feed.answer(first["feed"], 2)["changes"] == [
        {"namespaceId": "public", "groupName": "DEFAULT_GROUP", "serviceName": "a"}]
    assert feed.answer(first["feed"], 3) == {"feed": first["feed"], "revision": 3, "complete": True, "changes": []}


def test_the_feed_leaves_out_cluster_wide_data() -> None:
    feed = ChangeFeed()
    reserved = ServiceKey("", "", "namespaces")  # no group: the namespaces, not a service
    feed.on_change(reserved, empty_view(reserved))
    assert feed.revision == 0
    feed.on_change(KEY_A, empty_view(KEY_A))
    assert [c["serviceName"] for c in feed.answer(feed.feed_id, 0)["changes"]] == ["a"]


def test_the_feed_says_incomplete_when_it_cannot_tell() -> None:
    feed = ChangeFeed(remembered=2)
    for _ in range(3):
        feed.on_change(KEY_A, empty_view(KEY_A))
    assert feed.answer(feed.feed_id, 0)["complete"] is False  # the ring no longer reaches back
    assert feed.answer(feed.feed_id, 1)["complete"] is True
    assert feed.answer("another-node-run", 3)["complete"] is False  # the node restarted
    assert feed.answer(feed.feed_id, 9)["complete"] is False  # from the future: another run too


async def test_a_current_poll_waits_for_the_next_change(autojump_clock: trio.abc.Clock) -> None:
    feed = ChangeFeed()
    answers: list[dict[str, object]] = []

    async def poll() -> None:
        answers.append(await feed.wait(feed.feed_id, 0, 20_000))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.sleep(5)
        assert answers == [] and feed.waiters == 1
        feed.on_change(KEY_B, empty_view(KEY_B))
    assert answers[0]["revision"] == 1 and answers[0]["changes"] == [
        {"namespaceId": "dev", "groupName": "g", "serviceName": "b"}]
    assert feed.waiters == 0


async def test_a_current_poll_times_out_with_the_same_revision(autojump_clock: trio.abc.Clock) -> None:
    feed = ChangeFeed()
    started = trio.current_time()
    answer = await feed.wait(feed.feed_id, 0, 20_000)
    assert trio.current_time() - started == pytest.approx(20.0)
    assert answer == {"feed": feed.feed_id, "revision": 0, "complete": True, "changes": []}


async def test_a_poll_that_is_behind_or_over_the_bound_answers_at_once(autojump_clock: trio.abc.Clock) -> None:
    feed = ChangeFeed(max_waiters=0)
    started = trio.current_time()
    assert (await feed.wait(feed.feed_id, 0, 20_000))["revision"] == 0  # over the bound of waiters
    feed.on_change(KEY_A, empty_view(KEY_A))
    assert (await ChangeFeed().wait(None, None, 20_000))["complete"] is False  # first call
    assert (await feed.wait(feed.feed_id, 0, 20_000))["revision"] == 1  # behind
    assert trio.current_time() == started
