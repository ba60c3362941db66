"""The codec of the subscriber query pair (``SubscribersQuery`` / ``SubscribersReply``): round trips through
msgpack, and untrusted input is refused with a ProtocolError (never anything else)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from distro.codec import ProtocolError, decode_message, encode_message
from distro.messages import Message, SubscribersQuery, SubscribersReply
from distro.model import ServiceKey

KEY = ServiceKey("public", "DEFAULT_GROUP", "svc")
text = st.text(max_size=40)
rows = st.tuples(text, text, text, text, st.integers(0, 65535), text, st.sampled_from(["udp", "grpc", "watch"]))
messages = st.one_of(
    st.builds(SubscribersQuery, st.integers(0, 2**63 - 1), st.just(KEY)),
    st.builds(SubscribersReply, st.integers(0, 2**63 - 1), st.lists(rows, max_size=5).map(tuple)),
)


@given(messages)
def test_round_trip_through_msgpack(message: Message) -> None:
    wire = msgpack.packb(encode_message(message), use_bin_type=True)
    assert decode_message(msgpack.unpackb(wire, raw=False)) == message


def test_layout() -> None:
    assert encode_message(SubscribersQuery(7, KEY)) == ["subq", 7, "public##DEFAULT_GROUP@@svc"]
    reply = SubscribersReply(7, (("1.2.3.4:9", "Nacos-Java-Client:v1.4.2", "app", "1.2.3.4", 9, "", "udp"),))
    assert encode_message(reply) == ["subr", 7, [["1.2.3.4:9", "Nacos-Java-Client:v1.4.2", "app", "1.2.3.4", 9, "", "udp"]]]


@pytest.mark.parametrize(
    "obj",
    [
        ["subq", 1],
        ["subq", -1, "public##DEFAULT_GROUP@@svc"],
        ["subq", 1, "no-separator"],
        ["subr", 1, [["a", "b", "c", "d", 70000, "", "udp"]]],
        ["subr", 1, [["a", "b", "c", "d", 9, ""]]],
        ["subr", 1, [["a", "b", "c", 4, 9, "", "udp"]]],
        ["subr", 1, "rows"],
        ["subr", 1, [["a" * 2000, "b", "c", "d", 9, "", "udp"]]],
    ],
)
def test_rejects(obj: Any) -> None:
    with pytest.raises(ProtocolError):
        decode_message(obj)
