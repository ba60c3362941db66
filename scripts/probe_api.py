#!/usr/bin/env python3
"""Hostile-parameter probe of the naming API: every route x every parameter x odd values; counts 5xx.

    .venv/bin/distroctl local-cluster --nodes 3 --base-port 17848 &
    python3 scripts/probe_api.py [--base-port 17848] [--nodes 3]

Each request replaces one parameter of a valid request with one hostile value (empty, NUL, bad percent
escapes, invalid UTF-8, NaN/1e400, 5,000-character values, 1,500-deep JSON nesting, ``@@``, ``##``, ...),
round-robin over the nodes. Prints the first 5xx answers and a total; exits 1 if any request got a 5xx
or no answer. The committed fuzzers (tests/cluster/test_fuzz_api.py) cover random requests; this is the
exhaustive one-parameter sweep used for the security issue's closing figure.
"""

from __future__ import annotations

import argparse
import socket
import sys
import urllib.parse

NS = "/nacos/v1/ns"
VALUES = [
    "", " ", "%00", "%", "%ZZ", "null", "None", "-1", "0", "1e400", "NaN", "-0", "9" * 30, "[" * 1500, "{" * 1500,
    "%ED%A0%80", "%FF%FE", "x" * 5000, "%E4%B8%AD", "a@@b", "a##b", "@@", "true", "TRUE", "{}", "[]",
    '{"type":"label","expression":"' + "a" * 100 + '"}', "1.2.3.4", "::1", "[::1]", "10.0.0.1:80", "a,b,,c",
    "\\u0000",
]
ROUTES = [
    ("POST", "/instance"), ("DELETE", "/instance"), ("PUT", "/instance"), ("PATCH", "/instance"),
    ("GET", "/instance"), ("GET", "/instance/list"), ("PUT", "/instance/beat"), ("POST", "/service"),
    ("DELETE", "/service"), ("PUT", "/service"), ("GET", "/service"), ("GET", "/service/list"),
    ("GET", "/catalog/services"), ("GET", "/operator/servers"), ("GET", "/operator/metrics"),
    ("GET", "/operator/distro/server"), ("GET", "/instance/watch"),
]
PARAMS = [
    "serviceName", "groupName", "namespaceId", "ip", "port", "clusterName", "clusters", "weight", "enabled",
    "healthy", "ephemeral", "metadata", "beat", "healthyOnly", "udpPort", "clientIP", "protectThreshold",
    "selector", "pageNo", "pageSize", "checksum", "revision", "timeoutMs", "app", "tenant",
]
BASE = {"serviceName": "probe", "ip": "10.9.9.9", "port": "80", "protectThreshold": "0.5", "pageNo": "1",
        "pageSize": "10"}


def send(port: int, method: str, target: str) -> tuple[int, bytes]:
    """One request on a fresh connection; (status, the answer's last 200 bytes), status 0 when no answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: x\r\nUser-Agent: Nacos-Java-Client:v1.4.2\r\n"
                  "Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return (int(data.split(b" ", 2)[1]) if data else 0), data[-200:]


def query(path: str, param: str, value: str) -> str:
    """A valid request's query with ``param`` replaced by ``value`` (sent as is when it holds escapes)."""
    q = "&".join(f"{k}={urllib.parse.quote(v)}" for k, v in BASE.items() if k != param)
    q += f"&{param}={value if '%' in value else urllib.parse.quote(value)}"
    if param == "timeoutMs" or path.endswith("watch"):
        q += "&timeoutMs=10"
    return q


def main(argv: list[str] | None = None) -> int:
    """Every route x parameter x value, round-robin over the nodes; 1 when any got a 5xx or no answer."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-port", type=int, default=17848)
    ap.add_argument("--nodes", type=int, default=3)
    args = ap.parse_args(argv)
    bad = 0
    n = 0
    for method, path in ROUTES:
        for p in PARAMS:
            for v in VALUES:
                status, tail = send(args.base_port + n % args.nodes, method, f"{NS}{path}?{query(path, p, v)}")
                n += 1
                if status >= 500 or status == 0:
                    bad += 1
                    if bad < 15:
                        print(method, NS + path, p, v[:30], status, tail[-150:])
    print("requests", n, "5xx or no answer", bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
