#!/usr/bin/env python3
"""What issue 14's client-side findings cost an attacker: each attack, run against real ``distro-node`` processes.

    python3 scripts/attack_costs.py                      # this checkout's code
    python3 scripts/attack_costs.py --code /path/to/old  # another checkout's (to measure "before")
    python3 scripts/attack_costs.py --only reflection    # one attack: filters, reflection, connections,
                                                         # descriptors, watchers, logins, services

Auth off (as by default) except for the login attack; nodes on 127.0.0.1 with the checkout's defaults, the
"third party" and the other attackers on other loopback addresses (127.0.0.2...). Prints one line per
figure; docs/security.md quotes them. Nothing here is asserted (the tests do that); this measures.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

NS = "/nacos/v1/ns"
SECRET = "attack-costs-cluster-secret-0123456789"
TOKEN_SECRET = "attack-costs-token-secret-0123456789abcdef"
PASSWORD = "the right password"


def free_port_block(count: int) -> int:
    """A port p such that p, p+2, ... (count of them) and each +1000 and +1001 (gRPC, peer link) are free."""
    for base in range(21000, 60000, 37):
        ports = [base + 2 * i + offset for i in range(count) for offset in (0, 1000, 1001)]
        if all(_free(port) for port in ports):
            return base
    raise RuntimeError("no free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Nodes:
    """``count`` node processes of the checkout at ``code`` (None: this one), listing each other."""

    def __init__(self, code: str | None, count: int, args: Sequence[str] = (), nofile: int | None = None) -> None:
        self.code = code
        self.count = count
        self.args = list(args)
        self.nofile = nofile
        self.base = free_port_block(count)
        self.ports = [self.base + 2 * i for i in range(count)]
        self.urls = [f"http://127.0.0.1:{port}" for port in self.ports]
        self.dir = Path(tempfile.mkdtemp(prefix="attack-costs-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> Nodes:
        peers = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        env = dict(os.environ, DISTRO_CLUSTER_SECRET=SECRET, PYTHONUNBUFFERED="1")
        env = {k: v for k, v in env.items() if not k.startswith("DISTRO_") or k == "DISTRO_CLUSTER_SECRET"}
        if self.code:
            env["PYTHONPATH"] = self.code
        limit = self.nofile

        def limits() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        for i, port in enumerate(self.ports):
            log = (self.dir / f"n{i}.log").open("wb")
            command = [sys.executable, "-c", "from cluster.node.main import main; main()", "--node-id", f"n{i}",
                       "--host", "127.0.0.1", "--port", str(port), "--advertise-address", f"127.0.0.1:{port}",
                       "--peers", peers, *self.args]
            self.procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                               cwd=self.dir, preexec_fn=limits))
        deadline = time.monotonic() + 60
        with httpx.Client(trust_env=False, timeout=2) as http:
            for url in self.urls:
                while True:
                    try:
                        if http.get(f"{url}/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{url} not ready; logs in {self.dir}")
                    time.sleep(0.1)
        return self

    def rss_mb(self, index: int) -> float:
        text = Path(f"/proc/{self.procs[index].pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", text)
        return int(match.group(1)) / 1024 if match else 0.0

    def log(self, index: int) -> str:
        return (self.dir / f"n{index}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(10)


@contextmanager
def nodes(code: str | None, count: int, args: Sequence[str] = (), nofile: int | None = None) -> Iterator[Nodes]:
    cluster = Nodes(code, count, args, nofile)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def metric(http: httpx.Client, url: str, name: str) -> str:
    for line in http.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return line.split()[1]
    return "-"


def register_many(url: str, service: str, count: int, pad: Callable[[int], str]) -> None:
    def some(first: int) -> None:
        with httpx.Client(trust_env=False, timeout=30, verify=False) as http:  # one client per thread: cheap
            for i in range(first, count, 8):
                params = {"serviceName": service, "ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "port": "80",
                          "metadata": f'{{"pad":"{pad(i)}"}}'}
                http.post(f"{url}{NS}/instance", params=params).raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(some, range(8)))


def report(name: str, text: str) -> None:
    print(f"{name:12} {text}", flush=True)


# ---------------------------------------------------------------------------------------------- the attacks
def filters(code: str | None) -> None:
    """Finding 1: 60 list calls with clusters=DEFAULT,x<i> against a service with a ~2.4 MB list."""
    with nodes(code, 3) as cluster, httpx.Client(trust_env=False, timeout=60) as http:
        url = cluster.urls[0]
        register_many(url, "big", 6000, lambda i: f"{i:08x}" * 32)
        size = len(http.get(f"{url}{NS}/instance/list", params={"serviceName": "big"}).content)
        before = cluster.rss_mb(0)
        for i in range(60):
            http.get(f"{url}{NS}/instance/list", params={"serviceName": "big", "clusters": f"DEFAULT,x{i}"})
        time.sleep(1)
        grown = cluster.rss_mb(0) - before
        cache = metric(http, url, "distro_list_cache_bytes")
        report("filters", f"list {size / 1e6:.2f} MB; 60 filter requests: node RSS +{grown:.1f} MB; "
                          f"distro_list_cache_bytes {cache}")


def reflection(code: str | None, trusted: bool = False) -> None:
    """Finding 2: 600 list calls naming a third party (127.0.0.2) in clientIP, then one PUT /instance."""
    args = ["--push-trusted-networks", "127.0.0.0/8"] if trusted else []
    with nodes(code, 3, args) as cluster, httpx.Client(trust_env=False, timeout=60) as http:
        register_many(cluster.urls[0], "refl", 400, lambda i: os.urandom(64).hex())
        time.sleep(1)
        victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        victim.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024 * 1024)
        victim.bind(("127.0.0.2", 0))
        port = victim.getsockname()[1]
        for i in range(600):
            http.get(f"{cluster.urls[i % 3]}{NS}/instance/list",
                     params={"serviceName": "refl", "udpPort": str(port), "clientIP": "127.0.0.2"},
                     headers={"User-Agent": f"Nacos-Java-Client:v1.4.{i}"})
        http.put(f"{cluster.urls[0]}{NS}/instance", params={"serviceName": "refl", "ip": "10.0.0.1", "port": "80",
                                                           "weight": "2"})
        count = total = 0
        victim.settimeout(0.2)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                total += len(victim.recv(70_000))
                count += 1
            except TimeoutError:
                continue
        victim.close()
        mode = "with --push-trusted-networks 127.0.0.0/8" if trusted else "default"
        report("reflection", f"{mode}: one PUT after 600 list calls -> the third party got {count} datagrams, "
                             f"{total / 1e6:.2f} MB in 5 s")


def idle_hog(code: str | None) -> None:
    """Finding 3a: one address holds more idle keep-alive sockets than --max-connections (200 here)."""
    with nodes(code, 1, ["--max-connections", "200"]) as cluster:
        hog = []
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", cluster.ports[0]), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            hog.append(sock)
        time.sleep(0.5)
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(trust_env=False, transport=transport, timeout=5) as other:
            status = other.get(f"{cluster.urls[0]}/healthz").status_code
        for sock in hog:
            sock.close()
        report("connections", f"300 idle sockets from 127.0.0.1 (--max-connections 200): /healthz from 127.0.0.2 "
                              f"answers {status}")


def descriptors(code: str | None) -> None:
    """Finding 3b: a node whose descriptor limit is 256 (soft = hard) gets 400 connections at once."""
    with nodes(code, 1, [], nofile=256) as cluster:
        socks = []
        for _ in range(400):
            sock = socket.create_connection(("127.0.0.1", cluster.ports[0]), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(sock)
        answered: dict[str, int] = {}
        for sock in socks:
            try:
                data = sock.recv(64)
                key = data.split(b" ")[1].decode() if data else "closed"
            except TimeoutError:
                key = "no answer in 5 s"
            except OSError:
                key = "reset"
            answered[key] = answered.get(key, 0) + 1
        for sock in socks:
            sock.close()
        chose = re.search(r"client connections at most \d+", cluster.log(0))
        report("descriptors", f"limit 256, 400 clients at once: {answered}; "
                              f"{chose.group(0) if chose else 'no plan logged'}")


def watchers(code: str | None) -> None:
    """Finding 3c: 100 watches whose clients reset their sockets."""
    with nodes(code, 1) as cluster, httpx.Client(trust_env=False) as http:
        socks = []
        for _ in range(100):
            sock = socket.create_connection(("127.0.0.1", cluster.ports[0]))
            sock.sendall(f"GET {NS}/instance/watch?serviceName=w&checksum=&timeoutMs=60000 HTTP/1.1\r\nHost: x"
                         "\r\n\r\n".encode())
            socks.append(sock)
        time.sleep(1)
        active = metric(http, cluster.urls[0], "distro_watch_active")
        for sock in socks:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
        time.sleep(1)
        left = metric(http, cluster.urls[0], "distro_watch_active")
        report("watchers", f"100 watches waiting ({active}), their clients reset: 1 s later {left} still held")


def logins(code: str | None) -> None:
    """Finding 5: 38 addresses guess the admin's password 10 times each within a minute."""
    args = ["--auth", "--token-secret", TOKEN_SECRET, "--admin-password", PASSWORD]
    with nodes(code, 1, args) as cluster:
        statuses: dict[int, int] = {}
        lock = threading.Lock()

        def guess(i: int) -> None:
            transport = httpx.HTTPTransport(local_address=f"127.0.1.{i // 10 + 1}")
            with httpx.Client(trust_env=False, transport=transport, verify=False) as http:
                status = http.post(f"{cluster.urls[0]}/nacos/v1/auth/login",
                                   data={"username": "nacos", "password": f"guess-{i}"}).status_code
            with lock:
                statuses[status] = statuses.get(status, 0) + 1

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(guess, range(380)))
        report("logins", f"380 guesses from 38 addresses in a minute: {statuses.get(403, 0)} passwords checked, "
                         f"{statuses.get(429, 0)} refused unchecked (one node)")


def services(code: str | None) -> None:
    """Finding 5: --max-services 300, 330 new services created at once through the three nodes."""
    with nodes(code, 3, ["--max-services", "300"]) as cluster, httpx.Client(trust_env=False) as http:
        register_many(cluster.urls[0], "warm", 1, lambda i: "x")

        def create(first: int) -> None:
            with httpx.Client(trust_env=False, verify=False) as client:
                for i in range(first, 330, 12):
                    client.post(f"{cluster.urls[i % 3]}{NS}/instance",
                                params={"serviceName": f"s{i}", "ip": "10.0.0.1", "port": "80"})

        with ThreadPoolExecutor(12) as pool:
            list(pool.map(create, range(12)))
        time.sleep(2)
        held = [metric(http, url, "distro_keys") for url in cluster.urls]
        report("services", f"--max-services 300, 330 created at once over 3 nodes: each node holds {held}")


ATTACKS: dict[str, Callable[[str | None], None]] = {
    "filters": filters,
    "reflection": reflection,
    "reflection-optin": lambda code: reflection(code, trusted=True),
    "connections": idle_hog,
    "descriptors": descriptors,
    "watchers": watchers,
    "logins": logins,
    "services": services,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", help="run the nodes from this checkout (its cluster/ and distro/)")
    parser.add_argument("--only", action="append", choices=sorted(ATTACKS), help="run only these attacks")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attackers hold many sockets
    socket.setdefaulttimeout(5)
    for name in args.only or ATTACKS:
        try:
            ATTACKS[name](args.code)
        except Exception as exc:  # one attack failing (an old checkout without a flag) does not stop the rest
            report(name, f"could not run: {exc!r}")


if __name__ == "__main__":
    main()
