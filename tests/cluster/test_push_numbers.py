"""Every integer a client sees stays within 2^53 (issue 12): a UDP push packet's ``lastRefTime`` is the
node's clock in milliseconds, like Nacos's, and still grows strictly from one packet to the next."""

from __future__ import annotations

import time

import httpx
import trio

from tests.client.support import InProcessCluster, register
from tests.cluster.test_push import JavaLikeSubscriber


async def test_push_last_ref_time_is_milliseconds_and_grows() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        url = (await InProcessCluster(1).start(nursery)).urls[0]
        sub = await JavaLikeSubscriber(http, url, "numbers").open()
        await sub.list()
        refs = []
        for i in range(3):
            await register(http, url, "numbers", f"10.4.0.{i + 1}", 80)
            packet = await sub.receive_hosts(i + 1)
            refs.append(packet["lastRefTime"])
        now_ms = time.time() * 1000
        assert all(isinstance(ref, int) and abs(ref - now_ms) < 60_000 for ref in refs), refs  # epoch ms
        assert refs == sorted(set(refs)) and refs[-1] < 2**53
        sub.close()
        nursery.cancel_scope.cancel()
