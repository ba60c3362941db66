"""Nacos's ``snowflake`` instance ids (metadata ``preserved.instance.id.generator=snowflake``): the owner gives
a new instance the smallest non-negative integer no instance of the service holds, keeps it when the
instance registers again, and the id replicates with the entry (every node shows the same one)."""

from __future__ import annotations

import msgpack

from distro.codec import decode_message, encode_message
from distro.datum import Entry
from distro.messages import SyncBatch
from distro.model import Instance, ServiceKey, make_instance
from distro.ownership import owner_of
from distro.requests import Deregister, Register
from distro.testing.harness import Harness
from distro.versions import Version

SNOWFLAKE = {"preserved.instance.id.generator": "SnowFlake"}


def key_owned_by(owner: str) -> ServiceKey:
    return next(
        key for i in range(10_000)
        if owner_of(str(key := ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}")), ("n1", "n2")) == owner
    )


def inst(n: int, metadata: dict[str, str] | None = None) -> Instance:
    return make_instance(f"10.0.0.{n}", 80, metadata=SNOWFLAKE if metadata is None else metadata)


def ids(h: Harness, node: str, key: ServiceKey) -> dict[str, str]:
    view = h[node].view(key)
    assert view is not None
    return {i.ip: i.instance_id(key) for i in view.instances}


def test_snowflake_ids_are_the_smallest_free_and_stable() -> None:
    h = Harness(("n1", "n2"))
    h.start()
    key = key_owned_by("n1")
    for n in (1, 2, 3):
        h.client("n1", Register(key, inst(n)))
    h.client("n1", Register(key, inst(4, {})))  # the simple generator: its usual id
    assert ids(h, "n1", key) == {"10.0.0.1": "0", "10.0.0.2": "1", "10.0.0.3": "2",
                                 "10.0.0.4": f"10.0.0.4#80#DEFAULT#{key.grouped_name}"}
    h.client("n1", Deregister(key, "DEFAULT", "10.0.0.2", 80))
    h.client("n1", Register(key, inst(5)))
    h.client("n1", Register(key, make_instance("10.0.0.3", 80, weight=2.0, metadata=SNOWFLAKE)))  # again
    assert ids(h, "n1", key)["10.0.0.5"] == "1" and ids(h, "n1", key)["10.0.0.3"] == "2"
    h.client("n2", Register(key, inst(6)))  # through the other node: the owner assigns
    h.deliver_all()
    h.advance(100)
    assert ids(h, "n2", key) == ids(h, "n1", key) and ids(h, "n1", key)["10.0.0.6"] == "3"


def test_the_codec_carries_the_assigned_id() -> None:
    key = ServiceKey("public", "DEFAULT_GROUP", "svc")
    for value in (Instance("10.0.0.1", 80, assigned_id="7"), Instance("10.0.0.1", 80, connection="c1", assigned_id="7"),
                  Instance("10.0.0.1", 80, connection="c1")):
        batch = SyncBatch(((key, value.entry_id, Entry(Version(1, 0, "n1"), value)),))
        wire = msgpack.unpackb(msgpack.packb(encode_message(batch), use_bin_type=True), raw=False)
        assert decode_message(wire) == batch
