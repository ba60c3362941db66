"""``operator/switches``: Nacos's switch domain, shown and changed one entry at a time.

``GET /nacos/v1/ns/operator/switches`` answers Nacos 1.4.2's ``SwitchDomain`` JSON (every field, in its
order); ``PUT /nacos/v1/ns/operator/switches?entry=&value=[&debug=]`` changes one entry with Nacos's
parsing and checks (``SwitchManager.update``) and answers ``ok``. ``entry=batch`` takes a whole domain as
JSON (fields not given take their defaults).

What the values do here: ``pushEnabled`` turns UDP push subscriptions on and off, ``defaultCacheMillis`` and
``defaultPushCacheMillis`` are the ``cacheMillis`` that list answers announce to pollers and to push
subscribers. Every other entry is kept and shown for tools that read it, and changes nothing: this
registry has no Raft, no server-side health checks and its own peer protocol (docs/api-naming.md).

The switches an operator changed are cluster data (:class:`Switches`): a PUT on any node changes every
node, and a full restart keeps them when the nodes keep a data folder.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import trio

from cluster.api.params import Params
from cluster.http import Request, Response
from cluster.node.pump import NodeRuntime
from distro.model import ValidationError
from distro.requests import PutSetting

__all__ = ["SETTING_PREFIX", "SWITCH_DOMAIN_NAME", "SwitchDomain", "Switches", "default_switches"]

SWITCH_DOMAIN_NAME = "00-00---000-NACOS_SWITCH_DOMAIN-000---00-00"
_VERSION_RE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")
_JAVA_LONG_RE = re.compile(r"[+-]?[0-9]{1,19}")

SwitchDomain = dict[str, Any]
"""The switch domain as Nacos serializes it (field name -> value)."""


def default_switches() -> SwitchDomain:
    """Nacos 1.4.2's ``SwitchDomain`` defaults, in its JSON order."""
    return {
        "name": SWITCH_DOMAIN_NAME,
        "masters": None,
        "adWeightMap": {},
        "defaultPushCacheMillis": 10000,
        "clientBeatInterval": 5000,
        "defaultCacheMillis": 3000,
        "distroThreshold": 0.7,
        "healthCheckEnabled": True,
        "autoChangeHealthCheckEnabled": True,
        "distroEnabled": True,
        "enableStandalone": True,
        "pushEnabled": True,
        "checkTimes": 3,
        "httpHealthParams": {"max": 5000, "min": 500, "factor": 0.85},
        "tcpHealthParams": {"max": 5000, "min": 1000, "factor": 0.75},
        "mysqlHealthParams": {"max": 3000, "min": 2000, "factor": 0.65},
        "incrementalList": [],
        "serverStatusSynchronizationPeriodMillis": 2000,
        "serviceStatusSynchronizationPeriodMillis": 5000,
        "disableAddIP": False,
        "sendBeatOnly": False,
        "lightBeatEnabled": True,
        "limitedUrlMap": {},
        "distroServerExpiredMillis": 10000,
        "pushGoVersion": "0.1.0",
        "pushJavaVersion": "0.1.0",
        "pushPythonVersion": "0.4.3",
        "pushCVersion": "1.0.12",
        "pushCSharpVersion": "0.9.0",
        "enableAuthentication": False,
        "overriddenServerStatus": None,
        "defaultInstanceEphemeral": True,
        "healthCheckWhiteList": [],
        "checksum": None,
    }


def _java_long(value: str) -> int:
    if _JAVA_LONG_RE.fullmatch(value) is None or not -(2**63) <= int(value) < 2**63:
        raise ValidationError(f'For input string: "{value[:64]}"')
    return int(value)


def _java_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValidationError(f'For input string: "{value[:64]}"') from None
    if math.isnan(number) or math.isinf(number):
        raise ValidationError(f'For input string: "{value[:64]}"')
    return number


def _parse_bool(value: str) -> bool:
    """Java's ``Boolean.parseBoolean``."""
    return value.lower() == "true"


def _lenient_bool(value: str) -> bool:
    """commons-lang's ``BooleanUtils.toBoolean``: true, on, yes, y, t (any case)."""
    return value.lower() in ("true", "on", "yes", "y", "t")


def _at_least(entry: str, minimum: int, message: str) -> Callable[[SwitchDomain, str], None]:
    def apply(domain: SwitchDomain, value: str) -> None:
        number = _java_long(value)
        if number < minimum:
            raise ValidationError(message)
        domain[entry] = number

    return apply


def _set_long(field: str) -> Callable[[SwitchDomain, str], None]:
    def apply(domain: SwitchDomain, value: str) -> None:
        domain[field] = _java_long(value)

    return apply


def _set_bool(field: str, parse: Callable[[str], bool] = _parse_bool) -> Callable[[SwitchDomain, str], None]:
    def apply(domain: SwitchDomain, value: str) -> None:
        domain[field] = parse(value)

    return apply


def _distro_threshold(domain: SwitchDomain, value: str) -> None:
    threshold = _java_float(value)
    if threshold <= 0:
        raise ValidationError(f"distroThreshold can not be zero or negative: {threshold!r}")
    domain["distroThreshold"] = threshold


def _push_version(domain: SwitchDomain, value: str) -> None:
    parts = value.split(":")
    if len(parts) < 2:
        raise ValidationError(f"Index 1 out of bounds for length {len(parts)}")
    client, version = parts[0], parts[1]
    if not _VERSION_RE.fullmatch(version):
        raise ValidationError("illegal version, must match: [0-9]+\\.[0-9]+\\.[0-9]+")
    fields = {"java": "pushJavaVersion", "python": "pushPythonVersion", "c": "pushCVersion", "go": "pushGoVersion"}
    if client not in fields:
        raise ValidationError(f"unsupported client type: {client}")
    domain[fields[client]] = version


def _limited_urls(domain: SwitchDomain, value: str) -> None:
    if not value:
        return
    limited: dict[str, int] = {}
    for each in value.split(","):
        parts = each.split(":")
        if len(parts) < 2:
            raise ValidationError("invalid input for limited urls")
        if not parts[0]:
            raise ValidationError(f"url can not be empty, url: {parts[0]}")
        status = _java_long(parts[1])
        if status <= 0:
            raise ValidationError(f"illegal normal status code: {status}")
        limited[parts[0]] = status
    domain["limitedUrlMap"] = limited


def _overridden_status(domain: SwitchDomain, value: str) -> None:
    domain["overriddenServerStatus"] = "" if value == "null" else value


def _masters(domain: SwitchDomain, value: str) -> None:
    domain["masters"] = value.split(",")


def _batch(domain: SwitchDomain, value: str) -> None:
    try:
        given: Any = json.loads(value)
    except (ValueError, RecursionError):
        raise ValidationError(f"Param 'value' is illegal, batch needs a switch domain as JSON: {value[:200]}") from None
    if not isinstance(given, dict):
        raise ValidationError("Param 'value' is illegal, batch needs a switch domain as JSON")
    fresh = default_switches()
    for field, current in fresh.items():
        if field in given and field not in ("name", "checksum"):
            candidate = given[field]
            if current is not None and type(candidate) is not type(current) and not (
                isinstance(current, float) and type(candidate) is int
            ):
                raise ValidationError(f"Param 'value' is illegal, {field} has the wrong type")
            fresh[field] = candidate
    fresh["enableStandalone"] = domain["enableStandalone"]
    http, tcp = fresh["httpHealthParams"], fresh["tcpHealthParams"]
    if http.get("min", 0) < 500 or tcp.get("min", 0) < 500:
        raise ValidationError("min check time for http or tcp is too small(<500)")
    if http.get("max", 0) < 3000 or tcp.get("max", 0) < 3000:
        raise ValidationError("max check time for http or tcp is too small(<3000)")
    if not (0 <= http.get("factor", 0) <= 1 and 0 <= tcp.get("factor", 0) <= 1):
        raise ValidationError("malformed factor")
    domain.clear()
    domain.update(fresh)


_ENTRIES: dict[str, Callable[[SwitchDomain, str], None]] = {
    "batch": _batch,
    "distroThreshold": _distro_threshold,
    "clientBeatInterval": _set_long("clientBeatInterval"),
    "pushVersion": _push_version,
    "pushCacheMillis": _at_least("defaultPushCacheMillis", 10000, "min cache time for http or tcp is too small(<10000)"),
    "defaultCacheMillis": _at_least("defaultCacheMillis", 1000, "min default cache time  is too small(<1000)"),
    "masters": _masters,
    "distro": _set_bool("distroEnabled"),
    "check": _set_bool("healthCheckEnabled"),
    "pushEnabled": _set_bool("pushEnabled"),
    "serviceStatusSynchronizationPeriodMillis": _at_least(
        "serviceStatusSynchronizationPeriodMillis", 5000, "serviceStatusSynchronizationPeriodMillis is too small(<5000)"
    ),
    "serverStatusSynchronizationPeriodMillis": _at_least(
        "serverStatusSynchronizationPeriodMillis", 1000, "serverStatusSynchronizationPeriodMillis is too small(<15000)"
    ),
    "healthCheckTimes": _set_long("checkTimes"),
    "disableAddIP": _set_bool("disableAddIP"),
    "sendBeatOnly": _set_bool("sendBeatOnly"),
    "limitedUrlMap": _limited_urls,
    "enableStandalone": lambda domain, value: None,  # Nacos's own check makes this entry a no-op
    "overriddenServerStatus": _overridden_status,
    "defaultInstanceEphemeral": _set_bool("defaultInstanceEphemeral"),
    "distroServerExpiredMillis": _set_long("distroServerExpiredMillis"),
    "lightBeatEnabled": _set_bool("lightBeatEnabled", _lenient_bool),
    "autoChangeHealthCheckEnabled": _set_bool("autoChangeHealthCheckEnabled", _lenient_bool),
}
MAX_VALUE_CHARS = 65536
_FIXED = ("name", "checksum")  # not switches: the domain's name, and Nacos's always-null checksum
_DEFAULTS = default_switches()
SETTING_PREFIX = "switches/"
"""Each changed switch is the registry-wide setting ``switches/<field>`` (its value: the field's JSON)."""


class Switches:
    """The switch domain of one node and its two routes; ``listeners`` hear every change.

    The domain is Nacos's defaults overlaid with the switches an operator changed. Those are registry-wide
    settings (:class:`~distro.requests.PutSetting`, one per field, named ``switches/<field>``): cluster data,
    written through the owner of their reserved key, replicated to every node and kept on disk
    (``--data-dir``) like namespaces. Each field is its own setting, so two operators changing two switches
    at once on two nodes both keep their change.
    """

    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime = runtime
        self.listeners: list[Callable[[SwitchDomain], None]] = []
        self._overrides: dict[str, Any] = {}
        for name, text in runtime.node.settings().items():
            self._absorb(name, text)
        self._domain = self._build()
        runtime.setting_listeners.append(self._on_setting)

    def _absorb(self, name: str, text: str | None) -> bool:
        """Take one setting in; whether it was a switch."""
        if not name.startswith(SETTING_PREFIX):
            return False
        field_name = name[len(SETTING_PREFIX) :]
        if field_name in _FIXED or field_name not in _DEFAULTS:
            return False
        if text is None:
            self._overrides.pop(field_name, None)
            return True
        try:
            self._overrides[field_name] = json.loads(text)
        except (ValueError, RecursionError):  # written by a node that checked it: never expected
            return False
        return True

    def _build(self) -> SwitchDomain:
        domain = default_switches()
        domain.update(self._overrides)
        return domain

    def _on_setting(self, name: str, text: str | None) -> None:
        """The runtime's setting listener: a switch changed here (written, replicated or loaded)."""
        if self._absorb(name, text):
            self._domain = self._build()
            for listener in self.listeners:
                listener(self._domain)

    def current(self) -> SwitchDomain:
        """The domain as this node holds it now (do not mutate)."""
        return self._domain

    def changed_fields(self, entry: str, value: str) -> tuple[tuple[str, str], ...]:
        """What ``PUT ?entry=&value=`` changes: ``(field, JSON)`` pairs (Nacos's rules and texts); raises
        ValidationError for a bad value or an unknown entry."""
        apply = _ENTRIES.get(entry)
        if apply is None:
            raise ValidationError(f"unknown switch entry: {entry[:64]} (known: {', '.join(sorted(_ENTRIES))})")
        if len(value) > MAX_VALUE_CHARS:
            raise ValidationError(f"Param 'value' is too long: at most {MAX_VALUE_CHARS} characters")
        current = self._domain
        candidate = json.loads(json.dumps(current))  # a deep copy: a refused value changes nothing
        apply(candidate, value)
        return tuple(
            (name, json.dumps(candidate[name], separators=(",", ":")))
            for name in candidate
            if name not in _FIXED and candidate[name] != current[name]
        )

    async def get(self, request: Request, params: Params) -> Response:
        """GET /operator/switches."""
        await trio.lowlevel.checkpoint()
        return Response.json(self._domain)

    async def put(self, request: Request, params: Params) -> Response:
        """PUT /operator/switches?entry=&value=: ``ok`` once the owner of the settings took every change."""
        entry = params.spring_required("entry")
        value = params.spring_required("value")
        params.boolean("debug", False)  # Nacos's debug applies on one node only; every change here is cluster-wide
        await trio.lowlevel.checkpoint()
        for field_name, text in self.changed_fields(entry, value):
            result = await self.runtime.submit(PutSetting(SETTING_PREFIX + field_name, text))
            if not result.ok:
                return Response.text(result.status, str(result.body))
            self._on_setting(SETTING_PREFIX + field_name, text)  # read your writes before replication
        return Response.text(200, "ok")
