"""One GrpcConnection on a real socket pair, served with a handler whose unary calls all wait for their answer
(as a write forwarded to its owner does): what the connection does with the call meanwhile."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from cluster.grpc.client import GrpcClient
from cluster.grpc.connection import GrpcConnection, GrpcLimits
from cluster.grpc.wire import Payload, encode_payload, frame_message
from tests.polling import wait_for


class WaitingHandler:
    """Every unary call is left waiting (the answer comes later, through ``conn.answer``)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, Payload]] = []

    def unary(self, conn: GrpcConnection, stream_id: int, payload: Payload) -> Payload | None:
        self.calls.append((stream_id, payload))
        return None

    def stream_message(self, conn: GrpcConnection, payload: Payload) -> None:
        pass

    def stream_opened(self, conn: GrpcConnection) -> None:
        pass


def _message(kind: str, body: dict[str, object]) -> bytes:
    return frame_message(encode_payload(Payload(kind, json.dumps(body).encode())))


@asynccontextmanager
async def _served(handler: WaitingHandler | AnsweringHandler) -> AsyncIterator[tuple[GrpcConnection, GrpcClient]]:
    """A connection on one end of a socket pair served with ``handler``, and a pumped client on the other."""
    server_sock, client_sock = trio.socket.socketpair()
    conn = GrpcConnection(trio.SocketStream(server_sock), "c1", ("127.0.0.1", 1), GrpcLimits())
    client = GrpcClient(trio.SocketStream(client_sock))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run, handler)
        nursery.start_soon(client.pump)
        yield conn, client
        nursery.cancel_scope.cancel()


async def test_more_data_after_a_waiting_unary_message_fails_that_call_only() -> None:
    handler = WaitingHandler()
    async with _served(handler) as (conn, client):
        with trio.fail_after(10):
            first = await client.call_raw(_message("HealthCheckRequest", {"requestId": "1"}), end=False)
            await wait_for(lambda: handler.calls, what="the first call handed to the handler")
            await client.send_data(first, frame_message(b""), end=True)  # a second (empty) message
            await client.ended[first].wait()
        assert client.trailers[first]["grpc-status"] == "13"  # INTERNAL, as gRPC servers end such a call
        assert "exactly one request message" in client.trailers[first]["grpc-message"]
        assert len(handler.calls) == 1  # the empty message was not taken for a new call
        conn.answer(first, Payload("HealthCheckResponse", b'{"resultCode":200}'))  # comes too late: dropped
        with trio.fail_after(10):  # the connection serves on: the next call is answered
            second = await client.call_raw(_message("HealthCheckRequest", {"requestId": "2"}))
            await wait_for(lambda: len(handler.calls) == 2, what="the second call handed to the handler")
            conn.answer(second, Payload("HealthCheckResponse", b'{"resultCode":200}'))
            await client.ended[second].wait()
        assert client.trailers[second]["grpc-status"] == "0"
        assert [p.type for p in client.messages[second]] == ["HealthCheckResponse"]
        assert first not in client.messages


class AnsweringHandler:
    """Every unary call is answered at once (as a read, or a write this node owns)."""

    def __init__(self) -> None:
        self.calls = 0

    def unary(self, conn: GrpcConnection, stream_id: int, payload: Payload) -> Payload | None:
        self.calls += 1
        return Payload("HealthCheckResponse", b'{"resultCode":200}')

    def stream_message(self, conn: GrpcConnection, payload: Payload) -> None:
        pass

    def stream_opened(self, conn: GrpcConnection) -> None:
        pass


@pytest.mark.parametrize(
    "second",
    [_message("HealthCheckRequest", {"requestId": "2"}), _message("HealthCheckRequest", {"requestId": "2"})[:7]],
    ids=["two whole messages", "a whole message and the start of another"],
)
async def test_a_unary_calls_data_holding_more_than_one_message_ends_it_with_internal(second: bytes) -> None:
    """A unary call carries exactly one message: DATA that holds more (here headers and one DATA frame that
    ends the call, read together, as a client sends a unary call) ends the call with ``INTERNAL`` and a
    message, as gRPC servers do, and the handler is not asked at all. (The second message used to be
    silently ignored: the first was answered as if it were the whole call.) The connection serves on."""
    handler = AnsweringHandler()
    async with _served(handler) as (_conn, client):
        with trio.fail_after(10):
            call = await client.call_raw(_message("HealthCheckRequest", {"requestId": "1"}) + second)
            await client.ended[call].wait()
        assert client.trailers[call]["grpc-status"] == "13"
        assert "exactly one request message" in client.trailers[call]["grpc-message"]
        assert handler.calls == 0 and call not in client.messages
        with trio.fail_after(10):
            after = await client.call_raw(_message("HealthCheckRequest", {"requestId": "3"}))
            await client.ended[after].wait()
        assert client.trailers[after]["grpc-status"] == "0" and handler.calls == 1


async def test_a_client_that_never_reads_is_cut_off_at_the_outbound_bound_while_the_writer_waits() -> None:
    """A client that sends calls answered at once, each with a burst of PINGs, and never reads: once the
    socket is full the writer waits in its send, and every read then carries an answer to write. The
    outbound bound still holds (the connection closes as a slow reader past it), not only the writer's
    stall timeout, a minute away here. Before, a read whose answers were handed to the waiting writer
    skipped the bounds check, so the buffered PING acknowledgements and answers grew past the bound."""
    server_sock, client_sock = trio.socket.socketpair()
    limits = GrpcLimits(max_outbound_bytes=64 * 1024, max_concurrent_streams=100_000, stall_timeout_ms=60_000)
    conn = GrpcConnection(trio.SocketStream(server_sock), "c1", ("127.0.0.1", 1), limits)
    client = GrpcClient(trio.SocketStream(client_sock))  # never pumped: nothing is ever read
    message = _message("HealthCheckRequest", {"requestId": "1"})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run, AnsweringHandler())
        with trio.fail_after(10):
            for _ in range(1_000):
                if conn.closed:
                    break
                for i in range(200):
                    client.h2.ping(i.to_bytes(8, "big"))
                try:
                    await client.call_raw(message)  # queues the call after the pings, then sends them all
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
            await wait_for(lambda: conn.closed, what="the slow reader cut off")
        assert conn.close_reason is not None and "slow reader: over" in conn.close_reason
        nursery.cancel_scope.cancel()
