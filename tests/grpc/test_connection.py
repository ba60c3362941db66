"""One GrpcConnection on a real socket pair, served with a handler whose unary calls all wait for their answer
(as a write forwarded to its owner does): what the connection does with the call meanwhile."""

from __future__ import annotations

import json

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


async def test_more_data_after_a_waiting_unary_message_fails_that_call_only() -> None:
    server_sock, client_sock = trio.socket.socketpair()
    conn = GrpcConnection(trio.SocketStream(server_sock), "c1", ("127.0.0.1", 1), GrpcLimits())
    client = GrpcClient(trio.SocketStream(client_sock))
    handler = WaitingHandler()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run, handler)
        nursery.start_soon(client.pump)
        with trio.fail_after(10):
            first = await client.call_raw(_message("HealthCheckRequest", {"requestId": "1"}), end=False)
            await wait_for(lambda: handler.calls, what="the first call handed to the handler")
            await client.send_data(first, frame_message(b""), end=True)  # a second (empty) message
            await client.ended[first].wait()
        assert client.trailers[first]["grpc-status"] == "3"
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
        nursery.cancel_scope.cancel()
