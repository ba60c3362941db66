"""``instance/list`` in gzip for clients that ask for it (cluster/api/gzipbody.py, ListRenderer.render_gzip):
the same document as the plain answer, made of pieces deflated once, a big service's runs deflated only when
a change touched them, all of it inside the list cache's bound.
"""

from __future__ import annotations

import gzip
import json
import random
import zlib

import httpx
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.api.gzipbody import GZIP_MIN_BYTES, accepts_gzip, deflate_piece, gzip_member
from cluster.api.hostscache import ENTRY_OVERHEAD_BYTES, RUN_HOSTS, HostsCache
from cluster.api.render import ListQuery, ListRenderer
from distro.model import make_instance, service_key
from distro.requests import Register
from tests.client.support import NS, InProcessCluster, metric
from tests.cluster.bigservice import KEY, change_at_random, register
from tests.polling import wait_for

GUARD = 60


def test_accept_encoding_is_read_leniently() -> None:
    for header in ("gzip,deflate,sdch", "gzip, deflate", "GZIP", "x-gzip", "*", "deflate, gzip;q=0.5",
                   "br;q=1.0, gzip ; q=0.001", "identity, *;q=0.1"):
        assert accepts_gzip(header), header
    for header in (None, "", "identity", "deflate, br", "gzip;q=0", "x-gzip;q=0.0", "*;q=0", "gzip;q=abc",
                   "gzip;q=2", "gzip;q=-1", "*;q=0.5, gzip;q=0", ",,;;==", "gzipx", "\x00gzip"):
        assert not accepts_gzip(header), header


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=3000) | st.sampled_from([b"[", b",", b"]", b"}", b"[]"]), max_size=12))
def test_deflated_pieces_make_one_gzip_member_of_their_concatenation(parts: list[bytes]) -> None:
    body = gzip_member(parts, map(deflate_piece, parts))
    joined = b"".join(body)
    assert gzip.decompress(joined) == b"".join(parts)
    single = zlib.decompressobj(16 + zlib.MAX_WBITS)  # what httpx and most clients use: one member, then the end
    assert single.decompress(joined) == b"".join(parts) and single.eof and single.unused_data == b""


async def lists(http: httpx.AsyncClient, url: str, **params: str) -> tuple[httpx.Response, httpx.Response]:
    """The same list plain and in gzip (httpx inflates it)."""
    params = {"serviceName": "big", **params}
    plain = await http.get(f"{url}{NS}/instance/list", params=params, headers={"Accept-Encoding": "identity"})
    zipped = await http.get(f"{url}{NS}/instance/list", params=params,
                            headers={"Accept-Encoding": "gzip,deflate,sdch"})  # the Java 1.x client's
    assert plain.status_code == zipped.status_code == 200
    assert "content-encoding" not in plain.headers
    return plain, zipped


def same_document(plain: httpx.Response, zipped: httpx.Response) -> None:
    a, b = json.loads(plain.content), json.loads(zipped.content)
    a.pop("lastRefTime")
    b.pop("lastRefTime")
    assert a == b


async def test_a_big_list_in_gzip_is_the_plain_list_and_a_change_deflates_only_its_run() -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as http:
            node = (await InProcessCluster(1).start(nursery)).nodes[0]
            renderer = node.api.renderer
            for i in range(RUN_HOSTS * 3):
                await register(node, i)
            plain, zipped = await lists(http, node.url)
            assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["vary"] == "Accept-Encoding"
            assert int(zipped.headers["content-length"]) * 10 < len(plain.content)
            same_document(plain, zipped)
            view = node.runtime.node.view(KEY)
            assert view is not None
            runs = renderer.hosts_cache.runs(view, False)
            before = [renderer.hosts_cache.run_deflate(view, run[2]) for run in runs]
            assert all(before)

            await register(node, 5, metadata={"changed": "yes"})
            plain, zipped = await lists(http, node.url)
            same_document(plain, zipped)
            assert any(h["metadata"] == {"changed": "yes"} for h in json.loads(zipped.content)["hosts"])
            view = node.runtime.node.view(KEY)
            assert view is not None
            after = [renderer.hosts_cache.run_deflate(view, run[2]) for run in renderer.hosts_cache.runs(view, False)]
            assert sorted(a is b for a, b in zip(before, after, strict=True)) == [False, True, True]  # its run only

            for params in ({"clusters": "A"}, {"healthyOnly": "true"}):  # filtered forms, deflated whole
                same_document(*await lists(http, node.url, **params))
            kept = renderer.hosts_cache.gzipped(view, (("A",), False, False))
            assert kept is not None  # until the view changes
            assert renderer.render_gzip(ListQuery(KEY, ("A",)))[1:-1][1:-1] == kept  # header, head .. tail, end
            small_plain, small_zipped = await lists(http, node.url, serviceName="none")  # under GZIP_MIN_BYTES
            assert len(small_plain.content) < GZIP_MIN_BYTES and "content-encoding" not in small_zipped.headers
            nursery.cancel_scope.cancel()


async def test_gzip_lists_stay_within_the_cache_bound() -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as http:
            node = (await InProcessCluster(1, flags=["--list-cache-bytes", "300000"]).start(nursery)).nodes[0]
            for i in range(RUN_HOSTS * 2):
                await register(node, i, metadata={"pad": "x" * 200})
            for step in range(6):
                await register(node, step * 7, metadata={"pad": "y" * step})
                for params in ({}, {"clusters": "A"}, {"clusters": "B", "healthyOnly": "true"}):
                    same_document(*await lists(http, node.url, **params))
                    assert await metric(http, node.url, "distro_list_cache_bytes") <= 300_000
            renderer = node.api.renderer
            assert renderer.render_gzip(ListQuery(KEY)) is not None
            assert renderer.hosts_cache.size_bytes <= 300_000
            nursery.cancel_scope.cancel()


def _recount(cache: HostsCache) -> int:
    """The cache's bytes counted again from what it holds (every service's entry, as its methods count it)."""
    total = 0
    for entry in cache._services.values():
        size = ENTRY_OVERHEAD_BYTES + sum(size for _, size in entry.runs.values()) + entry.run_deflates_bytes
        if entry.clusters is not None:
            size += sum(len(name) + ENTRY_OVERHEAD_BYTES // 4 for name in entry.clusters)
        size += sum(cache._cost(entry, form, chunks) for form, (chunks, _) in entry.forms.items())
        size += sum(sum(map(len, pieces)) + ENTRY_OVERHEAD_BYTES for pieces in entry.gzipped.values())
        assert entry.run_deflates_bytes == sum(len(d) + ENTRY_OVERHEAD_BYTES // 2 for _, d in entry.run_deflates.values())
        assert entry.size_bytes == size
        total += size
    return total


async def test_gzip_lists_inflate_to_the_plain_list_through_random_changes_and_evictions() -> None:
    """Whatever the changes (one host, scattered ones, a block, registrations and removals), filters and
    flavours, and with a bound small enough that runs, forms and deflated pieces are evicted along the way:
    a gzip list inflates to the plain one, and the bytes the cache counts are what it holds."""
    rng = random.Random(11)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            node = (await InProcessCluster(1).start(nursery)).nodes[0]
            count = RUN_HOSTS * 3 + 7
            for i in range(count):
                await register(node, i, metadata={"v": "0"})
            other = service_key(None, None, "other")
            for i in range(RUN_HOSTS + 3):
                await node.runtime.submit(Register(other, make_instance(f"10.9.0.{i}", 80, metadata={"p": "y" * 200})))
            for bound in (4_000_000, 600_000, 540_000, 500_000):
                renderer = ListRenderer(node.runtime, cache_max_bytes=bound)
                queries = [ListQuery(KEY), ListQuery(KEY, java=True), ListQuery(KEY, ("A",)),
                           ListQuery(KEY, healthy_only=True), ListQuery(KEY, ("B",), java=True), ListQuery(other)]
                for step in range(40):
                    changes = {"metadata": {"v": str(step)}, "healthy": step % 4 != 0}
                    await change_at_random(node, rng, count, step, changes)
                    for query in rng.sample(queries, 4):
                        for _ in range(2):  # the second from what the first kept
                            pieces = renderer.render_gzip(query)
                            plain = json.loads(renderer.render(query))
                            if pieces is None:
                                continue
                            inflated = json.loads(gzip.decompress(b"".join(pieces)))
                            plain.pop("lastRefTime")
                            inflated.pop("lastRefTime")
                            assert inflated == plain, (bound, step, query)
                    assert renderer.hosts_cache.size_bytes == _recount(renderer.hosts_cache), (bound, step)
                    assert renderer.hosts_cache.size_bytes <= bound
            nursery.cancel_scope.cancel()


async def test_a_watch_answers_in_gzip_as_the_list_does() -> None:
    """``instance/watch`` answers a client that accepts gzip in gzip: at once (no checksum), and after a
    wait ended by a change; a small list, a 304, and a client that does not accept gzip: plain."""
    watch = f"{NS}/instance/watch"
    zipped_headers = {"Accept-Encoding": "gzip,deflate,sdch"}
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False, timeout=GUARD) as http:
            node = (await InProcessCluster(1).start(nursery)).nodes[0]
            for i in range(RUN_HOSTS * 2):
                await register(node, i)
            plain, _ = await lists(http, node.url)
            at_once = await http.get(f"{node.url}{watch}", params={"serviceName": "big"}, headers=zipped_headers)
            assert at_once.status_code == 200 and at_once.headers["content-encoding"] == "gzip"
            assert at_once.headers["vary"] == "Accept-Encoding"
            same_document(plain, at_once)
            checksum = at_once.json()["checksum"]

            answers: list[httpx.Response] = []

            async def wait_for_change() -> None:
                params = {"serviceName": "big", "checksum": checksum, "timeoutMs": "20000"}
                answers.append(await http.get(f"{node.url}{watch}", params=params, headers=zipped_headers))

            async with trio.open_nursery() as waiting:
                waiting.start_soon(wait_for_change)
                await wait_for(lambda: node.watch.active == 1, what="the watch waiting")
                await register(node, 3, metadata={"changed": "yes"})
            (changed,) = answers
            assert changed.status_code == 200 and changed.headers["content-encoding"] == "gzip"
            same_document((await lists(http, node.url))[0], changed)
            assert changed.json()["checksum"] != checksum

            unchanged = await http.get(f"{node.url}{watch}", headers=zipped_headers,
                                       params={"serviceName": "big", "checksum": changed.json()["checksum"],
                                               "timeoutMs": "0"})
            assert unchanged.status_code == 304 and "content-encoding" not in unchanged.headers
            small = await http.get(f"{node.url}{watch}", params={"serviceName": "none"}, headers=zipped_headers)
            assert small.status_code == 200 and "content-encoding" not in small.headers  # under GZIP_MIN_BYTES
            refused = await http.get(f"{node.url}{watch}", params={"serviceName": "big"},
                                     headers={"Accept-Encoding": "identity"})
            assert "content-encoding" not in refused.headers
            same_document((await lists(http, node.url))[0], refused)
            nursery.cancel_scope.cancel()
