"""The codec of the web console's query pair (``ConsoleQuery`` / ``ConsoleReply``): round trips through
msgpack, and untrusted input is refused with a ProtocolError (never anything else)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from distro.codec import ProtocolError, decode_message, encode_message
from distro.messages import ConsoleQuery, ConsoleReply, Message
from distro.model import ServiceKey

KEY = ServiceKey("public", "DEFAULT_GROUP", "svc")
ids = st.integers(0, 2**63 - 1)
beats = st.lists(st.tuples(st.text(max_size=60), st.integers(0, 2**53)), max_size=5).map(tuple)
messages = st.one_of(
    st.builds(ConsoleQuery, ids, st.sampled_from([None, KEY])),
    st.builds(ConsoleReply, ids, st.text(max_size=20), st.integers(0, 2**53), st.integers(0, 2**53), beats),
)


@given(messages)
def test_round_trip_through_msgpack(message: Message) -> None:
    wire = msgpack.packb(encode_message(message), use_bin_type=True)
    assert decode_message(msgpack.unpackb(wire, raw=False)) == message


def test_layout() -> None:
    assert encode_message(ConsoleQuery(7, None)) == ["conq", 7, None]
    assert encode_message(ConsoleQuery(7, KEY)) == ["conq", 7, "public##DEFAULT_GROUP@@svc"]
    reply = ConsoleReply(7, "0.1.0", 1000, 5000, (("DEFAULT/1.2.3.4:80", 4900),))
    assert encode_message(reply) == ["conr", 7, "0.1.0", 1000, 5000, [["DEFAULT/1.2.3.4:80", 4900]]]


@pytest.mark.parametrize(
    "obj",
    [
        ["conq", 1],
        ["conq", -1, None],
        ["conq", 1, "no-separator"],
        ["conq", 1, 5],
        ["conr", 1, "0.1.0", 1, 2],
        ["conr", 1, "v" * 65, 1, 2, []],
        ["conr", 1, "0.1.0", -1, 2, []],
        ["conr", 1, "0.1.0", 1, 2, "beats"],
        ["conr", 1, "0.1.0", 1, 2, [["DEFAULT/1.2.3.4:80"]]],
        ["conr", 1, "0.1.0", 1, 2, [["DEFAULT/1.2.3.4:80", "soon"]]],
        ["conr", 1, "0.1.0", 1, 2, [["x" * 2000, 1]]],
    ],
)
def test_rejects(obj: Any) -> None:
    with pytest.raises(ProtocolError):
        decode_message(obj)
