"""Parsing Nacos gRPC request bodies into typed calls: one pass, the core's validation, Nacos's error codes,
and the leniency today's clients need."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from cluster.grpc.requests import (
    CODE_INVALID_PARAM,
    CODE_NO_HANDLER,
    PERSISTENT_REFUSED,
    BatchRegister,
    CallError,
    ClientAnswer,
    ConnectionSetup,
    InstanceCall,
    InstanceLimits,
    ServiceList,
    ServiceQuery,
    Subscribe,
    parse_call,
)
from cluster.grpc.responses import response, typed_response
from distro.model import ServiceKey, make_instance

KEY = ServiceKey("public", "DEFAULT_GROUP", "orders")


def parse(kind: str, body: Any) -> Any:
    return parse_call(kind, json.dumps(body).encode())


def test_register_instance_as_the_java_client_sends_it() -> None:
    call = parse("InstanceRequest", {
        "headers": {}, "requestId": "7", "module": "naming", "namespace": "public", "serviceName": "orders",
        "groupName": "DEFAULT_GROUP", "type": "registerInstance",
        "instance": {"ip": "10.0.0.1", "port": 8080, "weight": 2.0, "healthy": True, "enabled": True,
                     "ephemeral": True, "clusterName": "c1", "metadata": {"zone": "a"}, "instanceId": None},
    })
    assert call == InstanceCall("7", True, KEY, make_instance("10.0.0.1", 8080, cluster="c1", weight=2.0,
                                                              metadata={"zone": "a"}))


def test_defaults_and_leniency() -> None:
    # nacos-sdk-python 3.x: empty module/requestId/namespace/group, healthOnly instead of healthyOnly
    call = parse("ServiceQueryRequest", {"module": "", "requestId": "", "namespace": "", "groupName": "",
                                         "serviceName": "orders", "cluster": "", "healthOnly": True, "udpPort": 0})
    assert call == ServiceQuery("", KEY, (), True)
    call = parse("InstanceRequest", {"serviceName": "orders", "type": "deregisterInstance",
                                     "instance": {"ip": "10.0.0.1", "port": "80", "clusterName": None, "metadata": None,
                                                  "unknownField": [1, 2]}})
    assert call == InstanceCall("", False, KEY, make_instance("10.0.0.1", 80))
    assert parse("ServiceQueryRequest", {"serviceName": "orders", "healthyOnly": "true"}).healthy_only


def test_subscribe_batch_list_setup_and_answers() -> None:
    assert parse("SubscribeServiceRequest", {"serviceName": "orders", "clusters": "a,b", "subscribe": False}) == \
        Subscribe("", KEY, ("a", "b"), False)
    batch = parse("BatchInstanceRequest", {"serviceName": "orders", "type": "batchRegisterInstance",
                                           "instances": [{"ip": "10.0.0.1", "port": 1}, {"ip": "10.0.0.2", "port": 2}]})
    assert isinstance(batch, BatchRegister) and [i.port for i in batch.instances] == [1, 2]
    assert parse("ServiceListRequest", {"namespace": "dev", "pageNo": 2, "pageSize": 5}) == \
        ServiceList("", "dev", "DEFAULT_GROUP", 2, 5)
    setup = parse("ConnectionSetupRequest", {"clientVersion": "Nacos-Java-Client:v2.4.0", "labels": {"module": "naming"}})
    assert isinstance(setup, ConnectionSetup) and setup.labels == {"module": "naming"}
    assert parse("NotifySubscriberResponse", {"requestId": "3"}) == ClientAnswer("3", "NotifySubscriberResponse")


@pytest.mark.parametrize(
    ("kind", "body", "code", "text"),
    [
        ("NoSuchRequest", {}, CODE_NO_HANDLER, "RequestHandler Not Found"),
        ("InstanceRequest", "not an object", CODE_INVALID_PARAM, "must be a JSON object"),
        ("InstanceRequest", {"serviceName": "", "type": "registerInstance"}, CODE_INVALID_PARAM,
         "Param 'serviceName' is required."),
        ("InstanceRequest", {"serviceName": "s", "type": "bogus"}, CODE_INVALID_PARAM, "Param 'type' is illegal"),
        ("InstanceRequest", {"serviceName": "s", "type": "registerInstance"}, CODE_INVALID_PARAM,
         "Param 'instance' is illegal"),
        ("InstanceRequest", {"serviceName": "s", "type": "registerInstance", "instance": {"ip": "1.2.3", "port": 1}},
         CODE_INVALID_PARAM, "IP address is spelled incorrectly"),
        ("InstanceRequest", {"serviceName": "s", "type": "registerInstance", "instance": {"ip": "1.2.3.4", "port": 70000}},
         CODE_INVALID_PARAM, "Param 'port' is illegal"),
        ("InstanceRequest", {"serviceName": "s", "type": "registerInstance",
                             "instance": {"ip": "1.2.3.4", "port": 1, "weight": 1e9}}, CODE_INVALID_PARAM, "weights range"),
        ("InstanceRequest", {"serviceName": "s", "type": "registerInstance",
                             "instance": {"ip": "1.2.3.4", "port": 1, "ephemeral": False}},
         CODE_INVALID_PARAM, PERSISTENT_REFUSED),
        ("InstanceRequest", {"serviceName": "s", "type": "registerInstance",
                             "instance": {"ip": "1.2.3.4", "port": 1, "metadata": {"a": {"nested": 1}}}},
         CODE_INVALID_PARAM, "metadata format incorrect"),
        ("InstanceRequest", {"serviceName": "s", "type": "registerInstance",
                             "instance": {"ip": "1.2.3.4", "port": 1, "healthy": "maybe"}}, CODE_INVALID_PARAM,
         "Param 'healthy' is illegal"),
        ("PersistentInstanceRequest", {"serviceName": "s"}, CODE_INVALID_PARAM, PERSISTENT_REFUSED),
        ("ServiceListRequest", {"pageSize": 0}, CODE_INVALID_PARAM, "Param 'pageSize' is illegal"),
        ("SubscribeServiceRequest", {"serviceName": "s", "clusters": "bad cluster"}, CODE_INVALID_PARAM,
         "cluster name can only have"),
        ("BatchInstanceRequest", {"serviceName": "s", "type": "batchRegisterInstance", "instances": {}},
         CODE_INVALID_PARAM, "must be a JSON array"),
    ],
)
def test_bad_requests(kind: str, body: Any, code: int, text: str) -> None:
    with pytest.raises(CallError) as caught:
        parse(kind, body)
    assert caught.value.code == code and text in caught.value.message


def test_invalid_json_and_deep_nesting_are_400() -> None:
    for raw in (b"{", b"\xff\xfe", b"[" * 100_000):
        with pytest.raises(CallError) as caught:
            parse_call("InstanceRequest", raw)
        assert caught.value.code == CODE_INVALID_PARAM


def test_metadata_bounds_follow_the_node_settings() -> None:
    body = json.dumps({"serviceName": "s", "type": "registerInstance",
                       "instance": {"ip": "1.2.3.4", "port": 1, "metadata": {f"k{i}": "v" for i in range(5)}}}).encode()
    assert parse_call("InstanceRequest", body, InstanceLimits(metadata_max_keys=5))
    with pytest.raises(CallError, match="too many keys"):
        parse_call("InstanceRequest", body, InstanceLimits(metadata_max_keys=4))
    with pytest.raises(CallError, match="too large"):
        parse_call("InstanceRequest", body, InstanceLimits(metadata_max_bytes=8))


def test_validated_instances_and_keys_are_memoized_only_for_exact_types() -> None:
    """The memo (a client registering one instance in service after service) never lets a value through
    that validation would refuse: ``1`` is not ``true``, ``[]`` is not an object, and failures are not kept."""
    instance = {"ip": "10.9.0.1", "port": 80, "weight": 2, "healthy": True, "enabled": True, "ephemeral": True,
                "clusterName": "DEFAULT", "metadata": {}}
    first = parse("InstanceRequest", {"serviceName": "memo-a", "type": "registerInstance", "instance": instance})
    again = parse("InstanceRequest", {"serviceName": "memo-b", "type": "registerInstance", "instance": instance})
    assert first.instance is again.instance and first.instance == make_instance("10.9.0.1", 80, weight=2.0)
    assert again.key == ServiceKey("public", "DEFAULT_GROUP", "memo-b")
    for bad, text in (({"healthy": 1}, "Param 'healthy' is illegal"), ({"metadata": []}, "must be a JSON object"),
                      ({"port": True}, "Param 'port' is illegal"), ({"ephemeral": False}, PERSISTENT_REFUSED),
                      ({"weight": float("nan")}, "weights range")):
        for _ in range(2):
            with pytest.raises(CallError, match=re.escape(text)):
                parse("InstanceRequest", {"serviceName": "memo-a", "type": "registerInstance",
                                          "instance": {**instance, **bad}})
    for _ in range(2):
        with pytest.raises(CallError, match="serviceName"):
            parse("InstanceRequest", {"serviceName": "a@@b@@c", "type": "registerInstance", "instance": instance})


@pytest.mark.parametrize("request_id", ["", "7", 'q"uote\\back', "ünï\u2028", "\x00\x1f", "\ud800lone"])
def test_string_only_responses_are_the_bytes_json_dumps_gives(request_id: str) -> None:
    fast = response("InstanceResponse", request_id, type="registerInstance")
    body = {"resultCode": 200, "errorCode": 0, "message": "", "requestId": request_id, "success": True,
            "type": "registerInstance"}
    assert fast.body == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    for _ in range(2):  # built, then from its kept tail
        typed = typed_response("InstanceResponse", request_id, "registerInstance")
        assert typed == fast
    assert json.loads(response("HealthCheckResponse", request_id).body)["success"] is True
