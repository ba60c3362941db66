"""Nacos 1.4.2's naming API, case by case (``cases.py``), against real ``distro-node`` processes.

Every case runs its setup requests, then its request, and compares the status and body with what Nacos
1.4.2 answers (or, for a deliberate difference, with ours: the case says what Nacos does instead). Every
JSON answer is also checked for integers a JavaScript client would lose (beyond 2^53).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cluster.tools.launcher import LocalNode

from .cases import ANY, CASES, INT, Call, Case, Exact
from .conftest import PASSWORD

pytestmark = pytest.mark.slow


def _fill(value: Any, names: dict[str, str]) -> Any:
    """``value`` with every ``{svc}``/``{token}`` replaced, in strings, keys and nested values."""
    if isinstance(value, str):
        for name, text in names.items():
            value = value.replace("{" + name + "}", text)
        return value
    if isinstance(value, dict):
        return {_fill(k, names): _fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, Exact):
        return Exact(_fill(value.value, names))
    return value


def mismatches(expected: Any, actual: Any, where: str = "$") -> Iterator[str]:
    """Where ``actual`` departs from ``expected`` (see cases.py for the matching rules)."""
    if expected is ANY:
        return
    if expected is INT:
        if type(actual) is not int or abs(actual) >= 2**53:
            yield f"{where}: expected an integer within 2^53, got {actual!r}"
        return
    if isinstance(expected, Exact):
        if actual != expected.value:
            yield f"{where}: expected exactly {expected.value!r}, got {actual!r}"
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            yield f"{where}: expected an object, got {actual!r}"
            return
        for key, value in expected.items():
            if key not in actual:
                yield f"{where}.{key}: missing"
            else:
                yield from mismatches(value, actual[key], f"{where}.{key}")
        return
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            yield f"{where}: expected {len(expected)} elements, got {actual!r}"
            return
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            yield from mismatches(e, a, f"{where}[{i}]")
        return
    if type(expected) is not type(actual) or expected != actual:
        yield f"{where}: expected {expected!r}, got {actual!r}"


def big_integers(value: Any, where: str = "$") -> Iterator[str]:
    """Integers beyond what a double keeps exactly (issue 12: every integer a client sees within 2^53)."""
    if type(value) is int and abs(value) >= 2**53:
        yield f"{where}: {value}"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from big_integers(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from big_integers(item, f"{where}[{i}]")


def send(client: httpx.Client, node: LocalNode, call: Call) -> httpx.Response:
    return client.request(call.method, f"{node.url}{call.path}", params=call.params, data=call.form,
                          headers=call.headers)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as http:
        yield http


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, request: pytest.FixtureRequest, client: httpx.Client) -> None:
    node: LocalNode = request.getfixturevalue("auth_node" if case.auth else "open_node")
    names = {"svc": f"conf-{case.id}"}
    if case.auth:
        login = client.post(f"{node.url}/nacos/v1/auth/login", data={"username": "nacos", "password": PASSWORD})
        names["token"] = login.json()["accessToken"]
    for step in case.setup:
        filled = Call(step.method, step.path, _fill(step.params, names), _fill(step.form, names), step.headers)
        response = send(client, node, filled)
        assert response.status_code == 200, (case.id, filled, response.status_code, response.text)
    call = Call(case.call.method, case.call.path, _fill(case.call.params, names), _fill(case.call.form, names),
                case.call.headers)
    response = send(client, node, call)
    expected = _fill(case.body, names)
    detail = f"{case.id} ({case.source}{'; differs: ' + case.differs if case.differs else ''})"
    assert response.status_code == case.status, (detail, response.status_code, response.text)
    if isinstance(expected, str):
        assert response.text == expected, (detail, response.text)
        return
    if expected is ANY:  # the status is the contract (e.g. an error text of ours)
        return
    body = response.json()
    problems = list(mismatches(expected, body))
    assert not problems, (detail, problems, json.dumps(body)[:2000])
    assert not list(big_integers(body)), (detail, list(big_integers(body)))


def test_every_case_is_unique_and_sourced() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert all(c.source for c in CASES)


def test_the_matcher_sees_differences() -> None:
    """The comparison itself can fail: each rule of cases.py on a wrong answer."""
    assert list(mismatches({"a": 1}, {"a": 1, "extra": 2})) == []
    assert list(mismatches({"a": 1}, {"a": 1.0}))  # an int is not a float
    assert list(mismatches({"a": 1}, {}))
    assert list(mismatches([{"a": 1}], [{"a": 1}, {"a": 2}]))
    assert list(mismatches(Exact({}), {"x": 1}))
    assert list(mismatches(INT, 2**53)) and list(mismatches(INT, "1")) and not list(mismatches(INT, 5))
    assert list(big_integers({"x": [1, 2**60]})) == ["$.x[1]: 1152921504606846976"]
