"""A minimal Nacos gRPC client over h2 and trio, for tests: it can also misbehave on purpose."""

from __future__ import annotations

import json
import ssl
from typing import Any

import h2.config
import h2.connection
import h2.events
import trio

from cluster.grpc.wire import MessageReader, Payload, decode_payload, encode_payload, frame_message

UNARY = "/Request/request"
BI = "/BiRequestStream/requestBiStream"


class GrpcTestClient:
    __test__ = False
    """One HTTP/2 connection. ``read_automatically=False`` makes a client that never reads."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.scheme = "https" if isinstance(stream, trio.SSLStream) else "http"
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self._readers: dict[int, MessageReader] = {}
        self.messages: dict[int, list[Payload]] = {}
        self.trailers: dict[int, dict[str, str]] = {}
        self.ended: dict[int, trio.Event] = {}
        self.pushes: list[Payload] = []
        self.push_event = trio.Event()
        self.window_event = trio.Event()
        self.closed = trio.Event()
        self.bi_id: int | None = None
        self.auto_ack = True
        self._seq = 0
        self._send_lock = trio.Lock()  # the pump and callers both flush: one at a time

    @classmethod
    async def connect(cls, port: int) -> GrpcTestClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    @classmethod
    async def connect_tls(cls, port: int, ca_file: str) -> GrpcTestClient:
        """Over TLS, verifying the server against ``ca_file`` (host 127.0.0.1) and offering ALPN h2 only."""
        context = ssl.create_default_context(cafile=ca_file)
        context.set_alpn_protocols(["h2"])
        raw = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(raw, context, server_hostname="127.0.0.1")
        try:
            await stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(raw)
            raise
        return cls(stream)

    async def flush(self) -> None:
        async with self._send_lock:
            data = self.h2.data_to_send()
            if data:
                await self.stream.send_all(data)

    async def pump(self) -> None:
        """Read and handle frames until the connection closes (run it in a nursery)."""
        try:
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    break
                for event in self.h2.receive_data(data):
                    await self._on_event(event)
                await self.flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.closed.set()
            for event in self.ended.values():
                event.set()

    async def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            for raw in self._readers.setdefault(event.stream_id, MessageReader()).feed(event.data):
                payload = decode_payload(raw)
                self.messages.setdefault(event.stream_id, []).append(payload)
                if event.stream_id == self.bi_id:
                    self.pushes.append(payload)
                    self.push_event.set()
                    self.push_event = trio.Event()
                    if self.auto_ack and payload.type.endswith("Request"):
                        body = json.loads(payload.body)
                        answer = payload.type.replace("Request", "Response")
                        await self.send_bi(Payload(answer, json.dumps({"requestId": body.get("requestId", "")}).encode()))
        elif isinstance(event, h2.events.TrailersReceived):
            self.trailers[event.stream_id] = dict(event.headers)  # type: ignore[arg-type]
        elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
            self.ended.setdefault(event.stream_id, trio.Event()).set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed.set()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.window_event.set()
            self.window_event = trio.Event()

    def _headers(self, path: str) -> list[tuple[str, str]]:
        return [(":method", "POST"), (":scheme", self.scheme), (":path", path), (":authority", "localhost"),
                ("content-type", "application/grpc"), ("te", "trailers")]

    async def call_raw(self, data: bytes, path: str = UNARY, *, end: bool = True) -> int:
        """Send raw DATA bytes on a new stream; the stream id."""
        stream_id = self.h2.get_next_available_stream_id()
        self.ended[stream_id] = trio.Event()
        self.h2.send_headers(stream_id, self._headers(path))
        await self.send_data(stream_id, data, end=end)
        return stream_id

    async def send_data(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        """Send DATA within the frame size and the flow-control window (waiting for the server to open it)."""
        view = memoryview(data)
        while True:
            size = min(len(view), self.h2.max_outbound_frame_size, self.h2.local_flow_control_window(stream_id))
            if size == 0 and len(view):
                await self.flush()
                await self.window_event.wait()
                continue
            self.h2.send_data(stream_id, bytes(view[:size]), end_stream=end and size == len(view))
            view = view[size:]
            if not len(view):
                break
        await self.flush()

    async def call(self, kind: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                   timeout_s: float = 10) -> dict[str, Any]:
        """A unary call; the decoded JSON answer (with ``_type`` set to the response type)."""
        self._seq += 1
        body = {"requestId": str(self._seq), "module": "naming", **(body or {})}
        payload = Payload(kind, json.dumps(body).encode(), headers or {})
        stream_id = await self.call_raw(frame_message(encode_payload(payload)))
        with trio.fail_after(timeout_s):
            await self.ended[stream_id].wait()
        answer = self.messages[stream_id][0]
        out: dict[str, Any] = json.loads(answer.body)
        out["_type"] = answer.type
        return out

    async def open_bi(self) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        self.bi_id = stream_id
        self.h2.send_headers(stream_id, self._headers(BI))
        await self.flush()
        return stream_id

    async def send_bi(self, payload: Payload) -> None:
        assert self.bi_id is not None
        await self.send_data(self.bi_id, frame_message(encode_payload(payload)))

    async def setup(self) -> None:
        """ServerCheck, open the bi-stream, ConnectionSetup; then wait for a health check to pass."""
        check = await self.call("ServerCheckRequest", {"module": "internal"})
        assert check["success"], check
        await self.open_bi()
        await self.send_bi(Payload("ConnectionSetupRequest", json.dumps(
            {"clientVersion": "test", "labels": {"source": "sdk", "module": "naming"}, "tenant": ""}).encode()))
        with trio.fail_after(10):
            while (await self.call("HealthCheckRequest", {"module": "internal"}))["errorCode"] == 301:
                await trio.sleep(0.01)

    async def next_push(self, kind: str = "NotifySubscriberRequest", timeout_s: float = 10) -> dict[str, Any]:
        with trio.fail_after(timeout_s):
            while True:
                for payload in self.pushes:
                    if payload.type == kind:
                        self.pushes.remove(payload)
                        result: dict[str, Any] = json.loads(payload.body)
                        return result
                await self.push_event.wait()

    async def aclose(self) -> None:
        try:
            self.h2.close_connection()
            await self.flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await self.stream.aclose()
