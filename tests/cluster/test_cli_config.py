"""``distro-node`` refuses unsafe configurations (exit code 2 and a message saying what to do), and a real
node process started with ``--auth`` guards its API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cluster.node.settings import ConfigError, parse_settings
from cluster.tools.launcher import free_ports

DISTRO_NODE = str(Path(sys.executable).parent / "distro-node")
TOKEN_SECRET = "t" * 32
PEER_REFUSAL = "refusing to start: --peers names other members but no --cluster-secret"
TOKEN_REFUSAL = "refusing to start: --auth needs --token-secret (DISTRO_TOKEN_SECRET) of at least 32 bytes"
PASSWORD_REFUSAL = "refusing to start: --auth needs --admin-password (DISTRO_ADMIN_PASSWORD); there is no default"


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any DISTRO_* variable (they would change the defaults), and a data
    folder of its own (the default, data/<node-id>, would be under the working directory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTRO_")}
    env["DISTRO_DATA_DIR"] = tempfile.mkdtemp(prefix="distro-cli-")
    env.update(extra)
    return env


# Each case: (arguments, environment, the message). The first four run as real processes, the rest
# through parse_settings in this process (the same code path, minus the process start-up cost).
REFUSALS = {
    "peers": (["--peers", "127.0.0.1:1,127.0.0.1:2"], {}, PEER_REFUSAL),
    "no-token-secret": (["--auth", "--admin-password", "pw"], {}, TOKEN_REFUSAL),
    "short-token-secret": (["--auth", "--token-secret", "t" * 31, "--admin-password", "pw"], {}, TOKEN_REFUSAL),
    "no-password": (["--auth", "--token-secret", TOKEN_SECRET], {}, PASSWORD_REFUSAL),
}
IN_PROCESS_REFUSALS = {
    "peers-env": ([], {"DISTRO_PEERS": "10.0.0.1:8848,10.0.0.2:8848"}, PEER_REFUSAL),
    "empty-secret": (["--peers", "127.0.0.1:1,127.0.0.1:2", "--cluster-secret", ""], {}, PEER_REFUSAL),
    "short-in-bytes": (["--auth", "--token-secret", "é" * 15, "--admin-password", "pw"], {}, TOKEN_REFUSAL),
    "no-password-env": ([], {"DISTRO_AUTH": "true", "DISTRO_TOKEN_SECRET": TOKEN_SECRET}, PASSWORD_REFUSAL),
    "no-token-secret-env": ([], {"DISTRO_AUTH": "1", "DISTRO_ADMIN_PASSWORD": "pw"}, TOKEN_REFUSAL),
    "empty-password": (["--auth=yes", "--token-secret", TOKEN_SECRET, "--admin-password", ""], {}, PASSWORD_REFUSAL),
}


@pytest.fixture(scope="module")
def refusals() -> dict[str, tuple[int, str]]:
    """Every case of REFUSALS run as a real ``distro-node`` process, all at once: (exit code, stderr)."""
    processes = {
        name: subprocess.Popen([DISTRO_NODE, "--port", "18848", *args], env=clean_env(**env),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for name, (args, env, _) in REFUSALS.items()
    }
    results = {}
    for name, process in processes.items():
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        results[name] = (process.returncode, stderr)
    return results


@pytest.mark.parametrize("case", list(REFUSALS))
def test_unsafe_configurations_are_refused(refusals: dict[str, tuple[int, str]], case: str) -> None:
    returncode, stderr = refusals[case]
    assert returncode == 2, (returncode, stderr)
    assert stderr.startswith("distro-node: " + REFUSALS[case][2]), stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("case", list(IN_PROCESS_REFUSALS))
def test_unsafe_configurations_are_refused_in_process(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    args, env, message = IN_PROCESS_REFUSALS[case]
    for name in [k for k in os.environ if k.startswith("DISTRO_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        parse_settings(["--port", "18848", *args])
    assert str(info.value).startswith(message)


def test_the_peer_refusal_says_how_to_make_a_secret(refusals: dict[str, tuple[int, str]]) -> None:
    assert "secrets.token_hex(32)" in refusals["peers"][1]


def test_previous_secrets_parse_and_are_checked() -> None:
    settings = parse_settings(["--peers", "127.0.0.1:1,127.0.0.1:2", "--cluster-secret", "n" * 32,
                               "--previous-cluster-secrets", "o" * 32 + ", " + "p" * 16,
                               "--previous-token-secrets", "t" * 32])
    assert settings.previous_cluster_secrets == ("o" * 32, "p" * 16)
    assert settings.previous_token_secrets == ("t" * 32,)
    assert parse_settings([]).previous_cluster_secrets == ()
    # short cluster secrets start (with a warning at start-up, tested with a real process below)
    assert parse_settings(["--peers", "127.0.0.1:1,127.0.0.1:2", "--cluster-secret", "short"]).cluster_secret == "short"
    with pytest.raises(ConfigError, match="--previous-token-secrets must be at least 32 bytes"):
        parse_settings(["--previous-token-secrets", "short"])


def test_safe_configurations_parse() -> None:
    # listing only itself is a one-node cluster: no secret needed
    assert parse_settings(["--port", "8848", "--peers", "127.0.0.1:8848"]).cluster_secret == ""
    settings = parse_settings(["--peers", "127.0.0.1:1,127.0.0.1:2", "--cluster-secret", "s" * 32])
    assert settings.core.cluster_size == 3
    settings = parse_settings(["--auth", "--token-secret", TOKEN_SECRET, "--admin-password", "pw"])
    assert settings.auth and settings.admin_user == "nacos" and settings.token_ttl_s == 18_000
    assert not parse_settings([]).auth  # off by default
    with pytest.raises(ConfigError, match="--cluster-secret"):
        parse_settings(["--peers", "127.0.0.1:1"])


def test_hardening_flags_parse_and_are_checked() -> None:
    defaults = parse_settings([])
    assert defaults.push_trusted_networks == () and defaults.list_cache_bytes == 64 * 1024 * 1024
    settings = parse_settings(["--push-trusted-networks", "10.0.0.0/8, 192.168.1.7,fd00::/8",
                               "--list-cache-bytes", "0"])
    assert [str(net) for net in settings.push_trusted_networks] == ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]
    assert settings.list_cache_bytes == 0
    with pytest.raises(ConfigError, match="--push-trusted-networks: not a network in CIDR notation: 'nope'"):
        parse_settings(["--push-trusted-networks", "10.0.0.0/8,nope"])
    with pytest.raises(ConfigError, match="--list-cache-bytes must not be negative"):
        parse_settings(["--list-cache-bytes", "-1"])


def _http(method: str, url: str) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), dict(exc.headers)


def test_real_node_with_auth_from_the_environment() -> None:
    pytest.importorskip("cluster.node.peerlink", reason="cluster/node/peerlink.py has not landed yet")
    (port,) = free_ports(1)
    env = clean_env(DISTRO_AUTH="true", DISTRO_TOKEN_SECRET=TOKEN_SECRET, DISTRO_ADMIN_PASSWORD="pw-from-env")
    process = subprocess.Popen(
        [DISTRO_NODE, "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _http("GET", f"{base}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else b""
            assert time.monotonic() < deadline, "node did not become ready"
            time.sleep(0.05)
        assert _http("GET", f"{base}/healthz")[0] == 200
        status, body, _ = _http("GET", f"{base}/nacos/v1/ns/instance/list?serviceName=a")
        assert (status, body) == (403, b"user not found!")
        status, body, _ = _http("POST", f"{base}/nacos/v1/auth/login?username=nacos&password=wrong")
        assert (status, body) == (403, b"unknown user!")
        status, body, headers = _http("POST", f"{base}/nacos/v1/auth/login?username=nacos&password=pw-from-env")
        assert status == 200
        token = json.loads(body)["accessToken"]
        assert headers["Authorization"] == f"Bearer {token}"
        status, body, _ = _http("POST", f"{base}/nacos/v1/ns/instance?serviceName=a&ip=10.0.0.1&port=80"
                                        f"&accessToken={token}")
        assert (status, body) == (200, b"ok")
        status, body, _ = _http("GET", f"{base}/nacos/v1/ns/instance/list?serviceName=a&accessToken={token}")
        assert status == 200 and json.loads(body)["hosts"][0]["ip"] == "10.0.0.1"
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 10 s; close the stderr pipe."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    if process.stderr is not None:
        process.stderr.close()


def test_a_short_cluster_secret_starts_with_a_warning() -> None:
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [DISTRO_NODE, "--host", "127.0.0.1", "--port", str(port), "--peers", f"127.0.0.1:{port},127.0.0.1:1",
         "--cluster-secret", "short"],
        env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # the warning comes before anything else
        assert "WARNING" in first and "a cluster secret of only 5 bytes" in first, first
        assert "secrets.token_hex(32)" in first
        for line in process.stderr:  # and the node runs
            if " started: node " in line:
                break
        else:
            raise AssertionError(f"the node exited with {process.wait()}")
    finally:
        _stop(process)
