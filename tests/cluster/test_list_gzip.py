"""``instance/list`` in gzip for clients that ask for it (cluster/api/gzipbody.py, ListRenderer.render_gzip):
the same document as the plain answer, made of pieces deflated once, a big service's runs deflated only when
a change touched them, all of it inside the list cache's bound.
"""

from __future__ import annotations

import gzip
import json
import zlib

import httpx
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.api.gzipbody import GZIP_MIN_BYTES, accepts_gzip, deflate_piece, gzip_member
from cluster.api.hostscache import RUN_HOSTS
from cluster.api.render import ListQuery
from distro.model import make_instance, service_key
from distro.requests import Register
from tests.client.support import NS, InProcessCluster, InProcessNode, metric

GUARD = 60
KEY = service_key(None, None, "big")


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


async def register(node: InProcessNode, i: int, **fields: object) -> None:
    instance = make_instance(f"10.0.{i // 256}.{i % 256}", 8080, cluster=("A", "B")[i % 2], **fields)
    result = await node.runtime.submit(Register(KEY, instance))
    assert result.status == 200, result


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
