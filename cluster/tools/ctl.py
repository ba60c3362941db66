"""``distroctl``: a command-line client for the registry, and a local cluster runner.

    distroctl register orders 10.0.0.1 8080 --metadata zone=a,version=2 [--keepalive]
    distroctl list orders [--healthy-only] [--clusters c1,c2] [--json]
    distroctl deregister orders 10.0.0.1 8080
    distroctl services [--group G|*]
    distroctl members
    distroctl watch orders
    distroctl local-cluster --nodes 3 [--base-port 8848] [--port-step 10] [--data-root DIR]

Servers come from ``--server host:port`` (repeatable or comma-separated), else ``DISTRO_SERVERS``, else
127.0.0.1:8848. A request that cannot connect, times out or gets a 500/502/503 is tried on the next
server. Exit codes: 0 done, 1 the server refused or could not be reached (the message says which),
2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import httpx

from distro.errors import CtlError
from distro.model import DEFAULT_CLUSTER, DEFAULT_GROUP
from distroreg.errors import NamingUnavailable, ServerFailure
from distroreg.servers import SyncServerPool

NS = "/nacos/v1/ns"
DEFAULT_SERVER = "127.0.0.1:8848"
CODE_RESOURCE_NOT_FOUND = 20404
_NO_WATCH_STATUSES = {404, 405, 501}
_HOST_RE = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.%A-Za-z]+\]")


class _Stop(Exception):
    """SIGINT or SIGTERM arrived."""


# ------------------------------------------------------------------------------------------------
# talking to servers
# ------------------------------------------------------------------------------------------------
def parse_server(text: str) -> str:
    """``host:port`` from ``host:port``, ``http://host:port[/]`` or ``host`` (port 8848)."""
    value = text.strip()
    for prefix in ("http://", "https://"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
    value = value.rstrip("/")
    if not value:
        raise CtlError(f"bad server address {text!r}: expected host:port", 2)
    host, sep, port = value.rpartition(":")
    if not sep or "]" in port:  # no port (an IPv6 literal's last colon is inside the brackets)
        host, port = value, "8848"
    if not _HOST_RE.fullmatch(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise CtlError(f"bad server address {text!r}: expected host:port", 2)
    return f"{host}:{port}"


def server_list(values: Sequence[str] | None) -> list[str]:
    """The servers to use: ``--server`` values, else ``DISTRO_SERVERS``, else the default."""
    raw = list(values or [])
    if not raw:
        raw = [os.environ.get("DISTRO_SERVERS", "") or DEFAULT_SERVER]
    servers: list[str] = []
    for item in raw:
        for part in item.split(","):
            if part.strip():
                address = parse_server(part)
                if address not in servers:
                    servers.append(address)
    if not servers:
        raise CtlError("no server given", 2)
    return servers


def _describe(exc: Exception, timeout_s: float) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        if "refused" in text.lower():
            return "connection refused (is a distro-node running there?)"
        return f"cannot connect: {text}"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout_s:g} s"
    return text


def _failure(failure: ServerFailure, timeout_s: float) -> str:
    """What one server did with a request that went on to the next, as distroctl says it."""
    if failure.response is not None:
        return f"HTTP {failure.response.status_code} {_body(failure.response)}"
    return _describe(failure.error, timeout_s) if failure.error is not None else "no answer"


def _address(url: str) -> str:
    """``host:port`` of a server URL of the pool."""
    return url.removeprefix("http://")


class Client:
    """Sends requests with the SDK's failover loop (:class:`distroreg.servers.SyncServerPool`): the first
    server that answers, sticky to the last one that did; distroctl's own messages when none does."""

    def __init__(self, servers: Sequence[str], timeout_s: float = 5.0) -> None:
        self.servers = list(servers)
        self.timeout_s = timeout_s
        self._http = httpx.Client(timeout=timeout_s, headers={"User-Agent": "distroctl"})
        self._pool = SyncServerPool(self.servers, self._http)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> tuple[str, httpx.Response]:
        """Send to each server in turn until one answers other than 5xx; the last server's 5xx is an answer too."""
        query = {k: _wire(v) for k, v in (params or {}).items() if v is not None}
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            response = self._pool.request(method, path, query, timeout=timeout)
        except NamingUnavailable as exc:
            last = exc.failures[-1] if exc.failures else None
            if last is not None and last.response is not None:  # the caller reports the server's own message
                return _address(last.url), last.response
            errors = [f"{_address(f.url)}: {_failure(f, timeout)}" for f in exc.failures]
            if len(errors) == 1:
                raise CtlError(f"cannot reach {errors[0]}") from None
            raise CtlError("cannot reach any server: " + "; ".join(errors)) from None
        except httpx.HTTPError as exc:
            raise CtlError(f"{_address(self._pool.current)}: {_describe(exc, timeout)}") from None
        return _address(self._pool.current), response

    def ok(self, method: str, path: str, params: dict[str, Any], action: str) -> tuple[str, httpx.Response]:
        """A request that must succeed (2xx); otherwise CtlError with the server's message."""
        server, response = self.request(method, path, params)
        if response.status_code >= 300:
            raise CtlError(f"{action} failed: {server} answered {response.status_code}: {_body(response)}")
        return server, response


def _wire(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _body(response: httpx.Response) -> str:
    text = response.text.strip()
    return text[:500] if text else "(empty body)"


def _json(response: httpx.Response, server: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise CtlError(f"{server} answered {response.status_code} with a body that is not JSON: {_body(response)}") from None


# ------------------------------------------------------------------------------------------------
# formatting
# ------------------------------------------------------------------------------------------------
def parse_metadata(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` (or a JSON object) into a dict."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            raise CtlError(f"--metadata is not valid JSON: {text}", 2) from None
        if not isinstance(value, dict):
            raise CtlError("--metadata JSON must be an object", 2)
        return {str(k): str(v) for k, v in value.items()}
    result: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CtlError(f"--metadata entries must be key=value, got {item!r}", 2)
        result[key.strip()] = value.strip()
    return result


def format_metadata(metadata: Any) -> str:
    """``k=v,k2=v2`` (``-`` when empty)."""
    if not isinstance(metadata, dict) or not metadata:
        return "-"
    return ",".join(f"{k}={v}" for k, v in sorted(metadata.items()))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table with left-aligned columns."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _bool_text(value: Any) -> str:
    return "true" if value is True else "false" if value is False else str(value)


def _host_key(host: dict[str, Any]) -> str:
    instance_id = host.get("instanceId")
    if isinstance(instance_id, str) and instance_id:
        return instance_id
    return f"{host.get('ip')}#{host.get('port')}#{host.get('clusterName')}"


def _host_label(host: dict[str, Any]) -> str:
    return f"{host.get('ip')}:{host.get('port')} {host.get('clusterName', DEFAULT_CLUSTER)}"


def _print(line: str) -> None:
    print(line, flush=True)


# ------------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------------
def _service_params(args: argparse.Namespace) -> dict[str, Any]:
    return {"serviceName": args.service, "groupName": args.group, "namespaceId": args.namespace}


def _instance_params(args: argparse.Namespace) -> dict[str, Any]:
    params = _service_params(args)
    params.update(ip=args.ip, port=args.port, clusterName=args.cluster, ephemeral=True)
    return params


def _service_label(args: argparse.Namespace) -> str:
    name = args.service if "@@" in args.service else f"{args.group}@@{args.service}"
    return name if not args.namespace else f"{args.namespace}##{name}"


def cmd_register(args: argparse.Namespace, client: Client) -> int:
    """Register one instance (and with --keepalive, beat until interrupted, then deregister)."""
    params = _instance_params(args)
    params.update(weight=args.weight, enabled=not args.disabled)
    if args.metadata is not None:
        params["metadata"] = json.dumps(parse_metadata(args.metadata), separators=(",", ":"))
    server, response = client.ok("POST", f"{NS}/instance", params, "register")
    if response.text.strip() != "ok":
        raise CtlError(f"register failed: {server} answered {response.status_code}: {_body(response)}")
    _print(f"registered {args.ip}:{args.port} (cluster {args.cluster}) in {_service_label(args)} via {server}")
    if not args.keepalive:
        return 0
    return _keepalive(args, client, params)


def _keepalive(args: argparse.Namespace, client: Client, register_params: dict[str, Any]) -> int:
    beat_params = _instance_params(args)
    beat_params.pop("ephemeral")
    interval_s = 5.0 if args.beat_interval is None else args.beat_interval
    _print(f"beating every {interval_s:g} s; Ctrl-C deregisters and exits")
    try:
        while True:
            time.sleep(interval_s)
            try:
                server, response = client.request("PUT", f"{NS}/instance/beat", beat_params)
            except CtlError as exc:
                print(f"distroctl: beat: {exc.message}; retrying", file=sys.stderr, flush=True)
                continue
            try:
                body: Any = response.json()
            except ValueError:
                body = {}
            if response.status_code >= 300:
                print(f"distroctl: beat refused by {server}: {response.status_code} {_body(response)}", file=sys.stderr)
                continue
            if isinstance(body, dict) and body.get("code") == CODE_RESOURCE_NOT_FOUND:
                client.ok("POST", f"{NS}/instance", register_params, "re-register")
                _print(f"{server} did not know the instance (20404): registered it again")
            if args.beat_interval is None and isinstance(body, dict):
                announced = body.get("clientBeatInterval")
                if isinstance(announced, int | float) and announced > 0:
                    interval_s = max(0.1, announced / 1000)
    except (_Stop, KeyboardInterrupt):
        pass
    server, _ = client.ok("DELETE", f"{NS}/instance", _instance_params(args), "deregister")
    _print(f"deregistered {args.ip}:{args.port} from {_service_label(args)} via {server}")
    return 0


def cmd_deregister(args: argparse.Namespace, client: Client) -> int:
    """Remove one instance."""
    server, response = client.ok("DELETE", f"{NS}/instance", _instance_params(args), "deregister")
    if response.text.strip() != "ok":
        raise CtlError(f"deregister failed: {server} answered {response.status_code}: {_body(response)}")
    _print(f"deregistered {args.ip}:{args.port} (cluster {args.cluster}) from {_service_label(args)} via {server}")
    return 0


def _list_params(args: argparse.Namespace) -> dict[str, Any]:
    params = _service_params(args)
    params["healthyOnly"] = bool(getattr(args, "healthy_only", False))
    if getattr(args, "clusters", None):
        params["clusters"] = args.clusters
    return params


def _fetch_hosts(client: Client, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    server, response = client.ok("GET", f"{NS}/instance/list", _list_params(args), "list")
    body = _json(response, server)
    if not isinstance(body, dict) or not isinstance(body.get("hosts"), list):
        raise CtlError(f"{server} answered a list without hosts: {_body(response)}")
    return server, body


def cmd_list(args: argparse.Namespace, client: Client) -> int:
    """List a service's instances."""
    server, body = _fetch_hosts(client, args)
    if args.json:
        _print(json.dumps(body, indent=2, ensure_ascii=False))
        return 0
    hosts: list[dict[str, Any]] = body["hosts"]
    protected = body.get("reachProtectionThreshold") is True
    if protected:
        # Nacos's protection: the list reports every instance healthy. Ask each one's real state.
        for h in hosts[:PROTECTED_DETAIL_LIMIT]:
            h["healthy"] = _real_health(client, args, h)
    healthy = sum(1 for h in hosts if h.get("healthy") is True)
    _print(f"{_service_label(args)}: {len(hosts)} instance(s), {healthy} healthy (from {server})")
    if protected:
        _print(
            "protect threshold reached: clients are given every instance as healthy; "
            f"HEALTHY below is each instance's real state (first {PROTECTED_DETAIL_LIMIT} asked)"
        )
    if hosts:
        rows = [
            [f"{h.get('ip')}:{h.get('port')}", h.get("clusterName", ""), h.get("weight", ""),
             _bool_text(h.get("healthy")), _bool_text(h.get("enabled")), format_metadata(h.get("metadata"))]
            for h in sorted(hosts, key=lambda h: (str(h.get("clusterName")), str(h.get("ip")), int(h.get("port", 0))))
        ]
        _print(table(["INSTANCE", "CLUSTER", "WEIGHT", "HEALTHY", "ENABLED", "METADATA"], rows))
    return 0


PROTECTED_DETAIL_LIMIT = 100


def _real_health(client: Client, args: argparse.Namespace, host: dict[str, Any]) -> object:
    """An instance's own health, from GET /instance (not subject to the protect threshold)."""
    params = _service_params(args)
    params.update(ip=host.get("ip"), port=host.get("port"), cluster=host.get("clusterName") or "DEFAULT")
    try:
        _server, response = client.ok("GET", f"{NS}/instance", params, "instance detail")
        detail = response.json()
    except (CtlError, ValueError):
        return "?"
    return detail.get("healthy", "?") if isinstance(detail, dict) else "?"


def cmd_services(args: argparse.Namespace, client: Client) -> int:
    """List services (all groups with ``--group '*'``, the default)."""
    rows: list[dict[str, Any]] = []
    page_no, page_size = 1, 1000
    server = client.servers[0]
    while True:
        params: dict[str, Any] = {"pageNo": page_no, "pageSize": page_size, "namespaceId": args.namespace}
        if args.group != "*":
            params["groupNameParam"] = args.group
        server, response = client.ok("GET", f"{NS}/catalog/services", params, "services")
        body = _json(response, server)
        page = body.get("serviceList") if isinstance(body, dict) else None
        if not isinstance(page, list):
            raise CtlError(f"{server} answered a service list without serviceList: {_body(response)}")
        rows.extend(page)
        if len(page) < page_size or len(rows) >= int(body.get("count", 0)) or page_no >= 1000:
            break
        page_no += 1
    if args.group != "*":  # the console filter matches substrings; keep the exact group
        rows = [r for r in rows if r.get("groupName") == args.group]
    rows.sort(key=lambda r: (str(r.get("groupName")), str(r.get("name"))))
    if args.json:
        _print(json.dumps({"count": len(rows), "services": rows}, indent=2, ensure_ascii=False))
        return 0
    group_text = "all groups" if args.group == "*" else f"group {args.group}"
    _print(f"{len(rows)} service(s) in {group_text} (from {server})")
    if rows:
        _print(table(
            ["GROUP", "SERVICE", "INSTANCES", "HEALTHY", "CLUSTERS"],
            [[r.get("groupName"), r.get("name"), r.get("ipCount"), r.get("healthyInstanceCount"), r.get("clusterCount")]
             for r in rows],
        ))
    return 0


def cmd_members(args: argparse.Namespace, client: Client) -> int:
    """The cluster's members as one node sees them."""
    server, response = client.ok("GET", f"{NS}/operator/servers", {}, "members")
    body = _json(response, server)
    servers = body.get("servers") if isinstance(body, dict) else None
    if not isinstance(servers, list):
        raise CtlError(f"{server} answered without servers: {_body(response)}")
    if args.json:
        _print(json.dumps(body, indent=2, ensure_ascii=False))
        return 0
    up = sum(1 for s in servers if s.get("state") == "UP")
    _print(f"{len(servers)} member(s), {up} up (as seen by {server})")
    rows = []
    for s in servers:
        extend = s.get("extendInfo") or {}
        heard = extend.get("lastRefreshTime")
        age = "-"
        if isinstance(heard, int) and heard > 0:
            age = f"{max(0.0, time.time() - heard / 1000):.1f}s ago"
        rows.append([s.get("nodeId", ""), s.get("address", ""), s.get("state", ""),
                     _bool_text(extend.get("ready")), "*" if s.get("self") else "", age])
    _print(table(["NODE", "ADDRESS", "STATE", "READY", "SELF", "LAST HEARD"], rows))
    return 0


# -- watch ----------------------------------------------------------------------------------------
def diff_hosts(
    old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]
) -> list[tuple[str, dict[str, Any], dict[str, tuple[Any, Any]]]]:
    """Events between two listings: ("added"|"removed"|"changed", host, {field: (before, after)})."""
    events: list[tuple[str, dict[str, Any], dict[str, tuple[Any, Any]]]] = []
    for key, host in new.items():
        before = old.get(key)
        if before is None:
            events.append(("added", host, {}))
            continue
        changes = {
            field: (before.get(field), host.get(field))
            for field in ("weight", "healthy", "enabled", "metadata")
            if before.get(field) != host.get(field)
        }
        if changes:
            events.append(("changed", host, changes))
    for key, host in old.items():
        if key not in new:
            events.append(("removed", host, {}))
    return events


def _event_line(kind: str, host: dict[str, Any], changes: dict[str, tuple[Any, Any]]) -> str:
    stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
    if kind in ("added", "initial"):
        sign = "+" if kind == "added" else "="
        return (f"{stamp} {sign} {_host_label(host)} weight={host.get('weight')} "
                f"healthy={_bool_text(host.get('healthy'))} enabled={_bool_text(host.get('enabled'))} "
                f"metadata={format_metadata(host.get('metadata'))}")
    if kind == "removed":
        return f"{stamp} - {_host_label(host)}"
    parts = []
    for field, (before, after) in changes.items():
        if field == "metadata":
            parts.append(f"metadata: {format_metadata(before)} -> {format_metadata(after)}")
        else:
            parts.append(f"{field}: {_bool_text(before)} -> {_bool_text(after)}")
    return f"{stamp} ~ {_host_label(host)} " + ", ".join(parts)


class _Watcher:
    """Follows a service: ``instance/watch`` (long poll) when the server has it, else polling."""

    def __init__(self, args: argparse.Namespace, client: Client) -> None:
        self.args = args
        self.client = client
        self.use_watch_api = not args.poll
        self.checksum = ""
        self.outage: str | None = None

    def next_listing(self) -> dict[str, Any] | None:
        """The service's next list body; None when there is nothing new to look at."""
        if not self.use_watch_api:
            time.sleep(self.args.interval)
            return self._poll()
        return self._watch()

    def _poll(self) -> dict[str, Any] | None:
        try:
            _, body = _fetch_hosts(self.client, self.args)
        except CtlError as exc:
            self._report_outage(exc.message)
            return None
        self._recovered()
        return body

    def _watch(self) -> dict[str, Any] | None:
        """One long poll: 200 with the list when the checksum changed, 304 at the server's timeout."""
        params = _list_params(self.args)
        params.update(checksum=self.checksum, timeoutMs=30_000)
        started = time.monotonic()
        try:
            server, response = self.client.request("GET", f"{NS}/instance/watch", params, timeout_s=45.0)
        except CtlError as exc:
            self._report_outage(exc.message)
            time.sleep(self.args.interval)
            return None
        if response.status_code in _NO_WATCH_STATUSES:
            self.use_watch_api = False
            print(f"distroctl: {server} has no instance/watch; polling every {self.args.interval:g} s",
                  file=sys.stderr, flush=True)
            return self._poll()
        self._recovered()
        body: Any = None
        if response.status_code == 200:
            try:
                body = response.json()
            except ValueError:
                body = None
        useful = isinstance(body, dict) and isinstance(body.get("hosts"), list)
        if response.status_code >= 400:  # e.g. 503 (too many watchers): poll this round
            useful = False
            time.sleep(self.args.interval)
            return self._poll()
        elapsed = time.monotonic() - started
        unchanged = not useful or str(body.get("checksum", "")) == self.checksum
        if unchanged and elapsed < self.args.interval:  # never spin, whatever the server does
            time.sleep(self.args.interval - elapsed)
        return body if useful else None

    def _report_outage(self, message: str) -> None:
        if self.outage != message:
            print(f"distroctl: watch: {message}; retrying", file=sys.stderr, flush=True)
        self.outage = message

    def _recovered(self) -> None:
        if self.outage is not None:
            print("distroctl: watch: reconnected", file=sys.stderr, flush=True)
        self.outage = None


def cmd_watch(args: argparse.Namespace, client: Client) -> int:
    """Print the service's instances, then every change, until interrupted."""
    watcher = _Watcher(args, client)
    known: dict[str, dict[str, Any]] | None = None
    Event = tuple[str, dict[str, Any], dict[str, tuple[Any, Any]]]
    body: dict[str, Any] | None
    try:
        _, body = _fetch_hosts(client, args)  # the first listing must work (else: say why and stop)
        while True:
            if body is None:
                body = watcher.next_listing()
                continue
            watcher.checksum = str(body.get("checksum", ""))
            hosts = {_host_key(h): h for h in body["hosts"] if isinstance(h, dict)}
            if known is None:
                if not args.json:
                    _print(f"watching {_service_label(args)}: {len(hosts)} instance(s); Ctrl-C to stop")
                events: list[Event] = [("initial", h, {}) for h in hosts.values()]
            else:
                events = diff_hosts(known, hosts)
            known = hosts
            for kind, host, changes in events:
                if args.json:
                    record: dict[str, Any] = {"time": time.time(), "event": kind, "instance": host}
                    if changes:
                        record["changes"] = {k: {"before": b, "after": a} for k, (b, a) in changes.items()}
                    _print(json.dumps(record, ensure_ascii=False))
                else:
                    _print(_event_line(kind, host, changes))
            body = None
    except (_Stop, KeyboardInterrupt):
        return 0


# -- local-cluster --------------------------------------------------------------------------------
class _Signals:
    """Counts SIGINT/SIGTERM instead of raising, while a local cluster runs."""

    def __init__(self) -> None:
        self.count = 0
        self.name = ""

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.name = signal.Signals(signum).name

    def install(self) -> None:
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)


def cmd_local_cluster(args: argparse.Namespace) -> int:
    """Run N nodes as child processes until SIGINT/SIGTERM."""
    from cluster.tools.launcher import GRPC_PORT_OFFSET, PEER_PORT_OFFSET, ClusterError
    from cluster.tools.localcluster import LocalCluster

    if not 1 <= args.nodes <= 64:
        raise CtlError("--nodes must be in 1..64", 2)
    if args.port_step < 1 or (args.nodes > 1 and args.port_step in (1, PEER_PORT_OFFSET - GRPC_PORT_OFFSET)):
        raise CtlError("--port-step must be at least 2 (a node's gRPC and peer ports are its HTTP port + 1000 and "
                       "+ 1001: HTTP ports one apart would collide)", 2)
    ports = [args.base_port + i * args.port_step for i in range(args.nodes)]
    last = ports[-1]
    if args.base_port < 1 or last + PEER_PORT_OFFSET > 65535:
        raise CtlError(f"--base-port {args.base_port} leaves no room for {args.nodes} node(s) and their gRPC and "
                       f"peer ports (ports up to {last + PEER_PORT_OFFSET})", 2)
    node_args: list[str] = []
    for flag in ("heartbeat_timeout_ms", "instance_expire_ms", "verify_interval_ms", "sync_delay_ms"):
        value = getattr(args, flag)
        if value is not None:
            node_args += [f"--{flag.replace('_', '-')}", str(value)]
    node_args += ["--log-level", args.log_level]
    node_args += list(args.node_arg or [])
    signals = _Signals()
    signals.install()
    log_dir = Path(args.log_dir) if args.log_dir else None
    cluster = LocalCluster(
        ports,
        node_args=node_args,
        log_dir=log_dir,
        die_with_parent=True,
        own_process_group=True,
        data_root=Path(args.data_root) if args.data_root else None,
    )
    try:
        cluster.check_ports_free()
    except ClusterError as exc:
        raise CtlError(f"{exc.args[0]} (choose another --base-port)") from None
    shown = ", ".join(str(port) for port in ports)
    _print(f"starting {args.nodes} node(s) on 127.0.0.1: HTTP ports {shown} (gRPC + {GRPC_PORT_OFFSET}, "
           f"peer links + {PEER_PORT_OFFSET}), cluster secret generated (not shown)")
    cluster.start()
    for node in cluster.nodes:
        where = f", log {node.log_path}" if node.log_path else ""
        _print(f"  {node.node_id}  {node.url}  pid {node.pid}{where}")
    failed = False
    try:
        took = cluster.wait_ready(args.ready_timeout, interrupted=lambda: signals.count > 0)
        if signals.count == 0:
            servers = ",".join(cluster.addresses)
            _print(f"ready: {args.nodes} node(s) at {servers} in {took:.1f} s; "
                   f"export DISTRO_SERVERS={servers}; Ctrl-C stops them")
            reported: set[str] = set()
            while signals.count == 0:
                time.sleep(0.2)
                for node in cluster.nodes:
                    code = node.returncode()
                    if code is not None and node.node_id not in reported:
                        reported.add(node.node_id)
                        failed = True
                        print(f"distroctl: node {node.node_id} (pid {node.pid}) exited with code {code}",
                              file=sys.stderr, flush=True)
                if len(reported) == len(cluster.nodes):
                    print("distroctl: every node has exited", file=sys.stderr, flush=True)
                    break
    except ClusterError as exc:
        print(f"distroctl: local-cluster: {exc.args[0]}", file=sys.stderr, flush=True)
        failed = True
    finally:
        seen = signals.count
        _print(f"stopping {len(cluster.nodes)} node(s)" + (f" ({signals.name})" if signals.name else ""))
        codes = cluster.stop(args.stop_timeout, force=lambda: signals.count > seen)
    bad = {node_id: code for node_id, code in codes.items() if code not in (0, None)}
    if bad:
        detail = ", ".join(f"{node_id}={code}" for node_id, code in sorted(bad.items()))
        _print(f"stopped (exit codes: {detail})")
    else:
        _print("stopped")
    return 1 if failed or bad else 0


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port (0..65535): {text}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", "-s", action="append", default=argparse.SUPPRESS, metavar="HOST:PORT",
                        help="a node to talk to (repeat, or comma-separate; default $DISTRO_SERVERS or "
                             f"{DEFAULT_SERVER})")
    common.add_argument("--timeout", type=_non_negative_float, default=argparse.SUPPRESS,
                        help="seconds to wait for each answer (default 5)")
    p = argparse.ArgumentParser(prog="distroctl", description=__doc__, parents=[common],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def service_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("service", help="service name (or GROUP@@name)")
        sp.add_argument("--group", "-g", default=DEFAULT_GROUP, help=f"group (default {DEFAULT_GROUP})")
        sp.add_argument("--namespace", "-n", default=None, help="namespace id (default public)")

    def instance_args(sp: argparse.ArgumentParser) -> None:
        service_args(sp)
        sp.add_argument("ip")
        sp.add_argument("port", type=_port)
        sp.add_argument("--cluster", "-c", default=DEFAULT_CLUSTER, help=f"cluster (default {DEFAULT_CLUSTER})")

    sp = sub.add_parser("register", parents=[common], help="register an instance")
    instance_args(sp)
    sp.add_argument("--weight", "-w", type=float, default=1.0)
    sp.add_argument("--metadata", "-m", default=None, help="k=v,k2=v2 or a JSON object")
    sp.add_argument("--disabled", action="store_true", help="register it with enabled=false")
    sp.add_argument("--keepalive", action="store_true",
                    help="keep beating (the instance expires without beats); Ctrl-C deregisters it")
    sp.add_argument("--beat-interval", type=_non_negative_float, default=None,
                    help="seconds between beats with --keepalive (default: what the server announces)")
    sp.set_defaults(func=cmd_register)

    sp = sub.add_parser("deregister", parents=[common], help="remove an instance")
    instance_args(sp)
    sp.set_defaults(func=cmd_deregister)

    sp = sub.add_parser("list", parents=[common], help="list a service's instances")
    service_args(sp)
    sp.add_argument("--healthy-only", action="store_true")
    sp.add_argument("--clusters", default=None, help="comma-separated cluster names")
    sp.add_argument("--json", action="store_true", help="print the server's JSON")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("services", parents=[common], help="list services")
    sp.add_argument("--group", "-g", default="*", help="one group, or * for all (default *)")
    sp.add_argument("--namespace", "-n", default=None)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_services)

    sp = sub.add_parser("members", parents=[common], help="the cluster's members")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_members)

    sp = sub.add_parser("watch", parents=[common], help="print a service's changes until Ctrl-C")
    service_args(sp)
    sp.add_argument("--healthy-only", action="store_true")
    sp.add_argument("--clusters", default=None)
    sp.add_argument("--interval", type=_non_negative_float, default=1.0, help="polling period in seconds")
    sp.add_argument("--poll", action="store_true", help="poll instance/list even if the server has instance/watch")
    sp.add_argument("--json", action="store_true", help="one JSON object per event")
    sp.set_defaults(func=cmd_watch)

    sp = sub.add_parser("local-cluster", help="run N nodes on 127.0.0.1 as local processes until Ctrl-C")
    sp.add_argument("--nodes", "-N", type=int, default=3)
    sp.add_argument("--base-port", type=_port, default=8848,
                    help="the first node's HTTP port (gRPC on HTTP + 1000, peer links on HTTP + 1001)")
    sp.add_argument("--port-step", type=int, default=10,
                    help="HTTP ports of the nodes are base, base+step, ... (default 10: 8848, 8858, 8868)")
    sp.add_argument("--heartbeat-timeout-ms", type=int, default=None)
    sp.add_argument("--instance-expire-ms", type=int, default=None)
    sp.add_argument("--verify-interval-ms", type=int, default=None)
    sp.add_argument("--sync-delay-ms", type=int, default=None)
    sp.add_argument("--log-level", default="INFO")
    sp.add_argument("--log-dir", default=None, help="write nN.log files here (default: node logs go to stderr)")
    sp.add_argument("--data-root", default=None,
                    help="keep each node's data folder (namespaces, settings) in DIR/nN across runs "
                         "(default: temporary folders, removed when the cluster stops)")
    sp.add_argument("--node-arg", action="append", metavar="--FLAG=VALUE",
                    help="extra distro-node argument (repeat); e.g. --node-arg=--ping-interval-ms=250")
    sp.add_argument("--ready-timeout", type=_non_negative_float, default=60.0, help="seconds (default 60)")
    sp.add_argument("--stop-timeout", type=_non_negative_float, default=10.0,
                    help="seconds to wait after SIGTERM before SIGKILL (default 10)")
    sp.set_defaults(func=None)
    return p


def _raise_stop(signum: int, frame: FrameType | None) -> NoReturn:
    raise _Stop(signal.Signals(signum).name)


def run(argv: Sequence[str] | None = None) -> int:
    """Parse and run; the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "local-cluster":
            return cmd_local_cluster(args)
        signal.signal(signal.SIGTERM, _raise_stop)
        client = Client(server_list(getattr(args, "server", None)), getattr(args, "timeout", 5.0))
        try:
            code: int = args.func(args, client)
            return code
        finally:
            client.close()
    except CtlError as exc:
        print(f"distroctl: {exc.message}", file=sys.stderr, flush=True)
        return exc.code
    except (_Stop, KeyboardInterrupt):
        print("distroctl: interrupted", file=sys.stderr, flush=True)
        return 130


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    sys.exit(run(argv))


__all__ = ["Client", "CtlError", "build_parser", "diff_hosts", "main", "parse_metadata", "parse_server", "run"]
