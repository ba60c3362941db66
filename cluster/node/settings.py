"""The settings of one node: :class:`NodeSettings` and the ``distro-node`` command line that fills them.

Every flag also reads ``DISTRO_<FLAG>`` from the environment::

    distro-node --node-id n1 --port 8848 --peers 127.0.0.1:8848,127.0.0.1:8849,127.0.0.1:8850 \\
                --cluster-secret "$SECRET"

Peers are the members' HTTP addresses; their peer links listen on the HTTP port plus
``--peer-port-offset`` (1001 by default, Nacos's cluster port) and the Nacos 2.x gRPC front door on the HTTP
port plus ``--grpc-port-offset`` (1000, Nacos's rule). docs/operations.md lists every knob. The entry point itself is
:mod:`cluster.node.main`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cluster.api.pushtargets import Network, parse_networks
from cluster.node.datadir import default_data_dir
from cluster.node.peerlink import MAX_PREVIOUS_SECRETS as MAX_PREVIOUS_CLUSTER_SECRETS
from cluster.node.peerlink import PEER_MAX_FRAME_BYTES
from cluster.node.tls import TlsFiles, tls_files
from distro.config import DistroConfig
from distro.errors import ConfigError

DESCRIPTION = """\
``distro-node``: run one registry node. Every flag also reads ``DISTRO_<FLAG>`` from the environment.

    distro-node --node-id n1 --port 8848 --peers 127.0.0.1:8848,127.0.0.1:8849,127.0.0.1:8850 \\
                --cluster-secret "$SECRET"

Peers are the members' HTTP addresses; their peer links listen on the HTTP port plus
``--peer-port-offset`` (1001 by default) and Nacos 2.x/3.x clients connect over gRPC to the HTTP port plus
``--grpc-port-offset`` (1000). docs/operations.md lists every knob.
"""
# Shorter cluster secrets are accepted (the operator decides) but warned about at start.
WEAK_CLUSTER_SECRET_BYTES = 16

# Core knobs exposed as flags: flag name -> DistroConfig field.
_CORE_FLAGS = {
    "heartbeat-timeout-ms": "heartbeat_timeout_ms",
    "instance-expire-ms": "instance_expire_ms",
    "health-check-interval-ms": "health_check_interval_ms",
    "client-beat-interval-ms": "client_beat_interval_ms",
    "sync-delay-ms": "sync_delay_ms",
    "sync-batch-entries": "sync_batch_entries",
    "verify-interval-ms": "verify_interval_ms",
    "ping-interval-ms": "ping_interval_ms",
    "peer-timeout-ms": "peer_timeout_ms",
    "snapshot-timeout-ms": "snapshot_timeout_ms",
    "forward-timeout-ms": "forward_timeout_ms",
    "tombstone-ttl-ms": "tombstone_ttl_ms",
    "max-instances-per-service": "max_instances_per_service",
    "max-services": "max_services",
    "max-pending-forwards": "max_pending_forwards",
    "deregister-grace-ms": "deregister_grace_ms",
    "beat-receipt-interval-ms": "beat_receipt_interval_ms",
    "max-beat-receipt-bytes": "max_beat_receipt_bytes",
    "max-clock-skew-ms": "max_clock_skew_ms",
    "grpc-probe-after-idle-ms": "connection_probe_after_idle_ms",
    "grpc-give-up-after-ms": "connection_give_up_after_ms",
    "max-instances-per-connection": "max_instances_per_connection",
    "max-namespaces": "max_namespaces",
    "max-deletion-records": "max_deletion_records",
    "empty-service-grace-ms": "empty_service_grace_ms",
    "empty-service-clean-interval-ms": "empty_service_clean_interval_ms",
}


@dataclass(frozen=True)
class NodeSettings:
    """Everything a node process is started with."""

    node_id: str
    host: str
    port: int
    advertise_address: str
    peers: tuple[str, ...]
    cluster_secret: str
    peer_port_offset: int
    core: DistroConfig
    log_level: str
    max_body_bytes: int
    max_connections: int
    request_timeout_ms: int
    idle_timeout_ms: int
    metadata_max_bytes: int
    metadata_max_keys: int
    auth: bool
    token_secret: str
    admin_user: str
    admin_password: str
    token_ttl_s: int
    grpc: bool = True
    grpc_port_offset: int = 1000
    grpc_max_connections: int = 16_384
    grpc_stall_timeout_ms: int = 20_000
    grpc_drain_ms: int = 3_000  # on SIGTERM, how long gRPC clients asked to move (ConnectResetRequest) may take
    previous_cluster_secrets: tuple[str, ...] = ()
    previous_token_secrets: tuple[str, ...] = ()
    list_cache_bytes: int = 64 * 1024 * 1024
    max_connections_per_ip: int = 1024
    fd_reserve: int = 256
    http_tls: bool = False  # the client HTTP port speaks TLS (with ``tls``)
    grpc_tls: bool = False  # the gRPC port speaks TLS with ALPN h2 (with ``tls``)
    tls: TlsFiles | None = None  # --tls-cert-file/--tls-key-file/--tls-ca-file (None: TLS off)
    push_trusted_networks: tuple[Network, ...] = ()
    data_dir: str = ""


def _env_default(flag: str, default: Any) -> Any:
    return os.environ.get("DISTRO_" + flag.upper().replace("-", "_"), default)


def _bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text}")


def build_parser() -> argparse.ArgumentParser:
    """The command line; every default can come from ``DISTRO_<FLAG>``."""
    p = argparse.ArgumentParser(prog="distro-node", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)

    def add(flag: str, default: Any, help_text: str, kind: Any = str) -> None:
        p.add_argument(f"--{flag}", default=_env_default(flag, default), type=kind, help=help_text)

    add("node-id", "", "this node's id (default: the advertised address)")
    add("host", "0.0.0.0", "address to listen on")
    add("port", 8848, "HTTP port", int)
    add("advertise-address", "", "host:port peers and clients use to reach this node (default: hostname:port)")
    add("peers", "", "comma-separated host:port (HTTP) of the cluster's members; listing itself is fine")
    add("cluster-secret", "", "shared secret that peers prove to each other (required with peers)")
    add("previous-cluster-secrets", "",
        "comma-separated secrets still accepted from peers while a new --cluster-secret is rolled out")
    add("peer-port-offset", 1001, "peer links listen on the HTTP port plus this (Nacos's cluster port)", int)
    p.add_argument("--grpc", default=_bool(_env_default("grpc", "true")), type=_bool, nargs="?", const=True,
                   help="serve the Nacos 2.x/3.x gRPC protocol (on by default)")
    add("grpc-port-offset", 1000, "the Nacos 2.x gRPC port is the HTTP port plus this (Nacos's rule)", int)
    add("grpc-max-connections", 16_384, "most gRPC client connections open at once", int)
    add("grpc-stall-timeout-ms", 20_000,
        "a gRPC client whose pending output makes no progress for this long (it does not read) is disconnected", int)
    add("grpc-drain-ms", 3_000,
        "on SIGTERM, gRPC clients are sent ConnectResetRequest (move to another member) and given this long to "
        "go before the node stops; 0: stop at once", int)
    add("data-dir", "", "this node's own folder for what survives a full restart (namespaces, service and "
        "cluster settings); default data/<node-id> under the working directory")
    add("log-level", "INFO", "DEBUG, INFO, WARNING or ERROR")
    add("max-body-bytes", 1_048_576, "largest request body (413 beyond)", int)
    add("max-connections", 4096, "most client connections open at once (kept below the file limit)", int)
    add("max-connections-per-ip", 1024, "most client connections from one address (kept below half the above)", int)
    add("fd-reserve", 256, "file descriptors kept for everything but client connections (plus 4 per peer)", int)
    add("request-timeout-ms", 10_000, "a request must arrive whole within this", int)
    add("idle-timeout-ms", 60_000, "idle keep-alive connections are closed after this", int)
    add("push-trusted-networks", "",
        "comma-separated CIDRs whose list calls may name another UDP push target in clientIP (default: none; "
        "pushes go to the caller's own address)")
    add("list-cache-bytes", 64 * 1024 * 1024, "bytes of rendered instance lists kept for reuse", int)
    add("metadata-max-bytes", 4096, "largest metadata of one instance or service", int)
    add("metadata-max-keys", 64, "most metadata keys of one instance or service", int)
    p.add_argument("--auth", default=_bool(_env_default("auth", "false")), type=_bool, nargs="?", const=True,
                   help="require tokens on the naming API (needs --token-secret and --admin-password)")
    add("token-secret", "", "HMAC key for access tokens, at least 32 bytes")
    add("previous-token-secrets", "",
        "comma-separated former token secrets: their tokens stay valid until they expire (rotation)")
    add("admin-user", "nacos", "the admin user's name")
    add("admin-password", "", "the admin user's password (no default)")
    add("token-ttl-s", 18_000, "access token lifetime in seconds", int)
    add("tls-cert-file", "", "PEM certificate (chain) of this node: turns TLS on (docs/security.md)")
    add("tls-key-file", "", "PEM private key of --tls-cert-file")
    add("tls-ca-file", "", "PEM CA bundle: peers verify each other's certificates against it (mutual TLS)")
    p.add_argument("--http-tls", default=_bool(_env_default("http-tls", "false")), type=_bool, nargs="?",
                   const=True, help="serve the client HTTP port over TLS (HTTPS) with --tls-cert-file/--tls-key-file")
    p.add_argument("--grpc-tls", default=_bool(_env_default("grpc-tls", "false")), type=_bool, nargs="?",
                   const=True, help="serve the gRPC port over TLS (ALPN h2) with --tls-cert-file/--tls-key-file")
    defaults = DistroConfig()
    for flag, field_name in _CORE_FLAGS.items():
        add(flag, getattr(defaults, field_name), f"core knob {field_name}", int)
    return p


def parse_settings(argv: Sequence[str] | None = None) -> NodeSettings:
    """Parse and check the command line; raises ConfigError with a message a user can act on."""
    args = build_parser().parse_args(argv)
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    _check_offsets(args.port, args.peer_port_offset, args.grpc_port_offset if args.grpc else None)
    if args.grpc_max_connections < 1 or args.grpc_stall_timeout_ms < 1:
        raise ConfigError("--grpc-max-connections and --grpc-stall-timeout-ms must be positive")
    advertise = args.advertise_address or f"{_default_host(args.host)}:{args.port}"
    peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    for peer in peers:
        host, sep, port = peer.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--peers entries must be host:port, got {peer!r}")
    others = [p for p in peers if not _is_self(p, args.host, args.port, advertise)]
    if others and not args.cluster_secret:
        raise ConfigError(
            "refusing to start: --peers names other members but no --cluster-secret (or DISTRO_CLUSTER_SECRET) "
            "was given; peers must prove they know a shared secret. Generate one with: "
            "python3 -c 'import secrets; print(secrets.token_hex(32))'"
        )
    previous_cluster = _secret_list(args.previous_cluster_secrets)
    if len(previous_cluster) > MAX_PREVIOUS_CLUSTER_SECRETS:
        raise ConfigError(f"--previous-cluster-secrets: at most {MAX_PREVIOUS_CLUSTER_SECRETS}")
    previous_token = _secret_list(args.previous_token_secrets)
    if any(len(secret.encode()) < 32 for secret in previous_token):
        raise ConfigError("refusing to start: each of --previous-token-secrets must be at least 32 bytes")
    if args.token_ttl_s <= 0:
        raise ConfigError(f"--token-ttl-s must be positive, got {args.token_ttl_s}")
    if not args.admin_user.strip():
        raise ConfigError("--admin-user must not be empty")
    if args.auth:
        if len(args.token_secret.encode()) < 32:
            raise ConfigError("refusing to start: --auth needs --token-secret (DISTRO_TOKEN_SECRET) of at least 32 bytes")
        if not args.admin_password:
            raise ConfigError("refusing to start: --auth needs --admin-password (DISTRO_ADMIN_PASSWORD); there is no default")
    cluster_size = len(set(others)) + 1
    core_values = {field_name: getattr(args, flag.replace("-", "_")) for flag, field_name in _CORE_FLAGS.items()}
    try:
        core = fit_peer_batches(DistroConfig(cluster_size=cluster_size, **core_values), args.metadata_max_bytes)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    node_id = args.node_id or advertise
    return NodeSettings(
        node_id=node_id,
        host=args.host,
        port=args.port,
        advertise_address=advertise,
        peers=peers,
        cluster_secret=args.cluster_secret,
        peer_port_offset=args.peer_port_offset,
        grpc=args.grpc,
        grpc_port_offset=args.grpc_port_offset,
        grpc_max_connections=args.grpc_max_connections,
        grpc_stall_timeout_ms=args.grpc_stall_timeout_ms,
        grpc_drain_ms=_non_negative("--grpc-drain-ms", args.grpc_drain_ms),
        core=core,
        log_level=args.log_level.upper(),
        max_body_bytes=args.max_body_bytes,
        max_connections=args.max_connections,
        request_timeout_ms=args.request_timeout_ms,
        idle_timeout_ms=args.idle_timeout_ms,
        metadata_max_bytes=args.metadata_max_bytes,
        metadata_max_keys=args.metadata_max_keys,
        auth=args.auth,
        token_secret=args.token_secret,
        admin_user=args.admin_user,
        admin_password=args.admin_password,
        token_ttl_s=args.token_ttl_s,
        previous_cluster_secrets=previous_cluster,
        previous_token_secrets=previous_token,
        list_cache_bytes=_non_negative("--list-cache-bytes", args.list_cache_bytes),
        max_connections_per_ip=_positive("--max-connections-per-ip", args.max_connections_per_ip),
        fd_reserve=_non_negative("--fd-reserve", args.fd_reserve),
        tls=tls_files(args.tls_cert_file, args.tls_key_file, args.tls_ca_file),
        http_tls=_tls_switch("--http-tls", args.http_tls, args.tls_cert_file, args.tls_key_file),
        grpc_tls=_grpc_tls(args),
        push_trusted_networks=_networks("--push-trusted-networks", args.push_trusted_networks),
        data_dir=args.data_dir.strip() or default_data_dir(node_id),
    )


def _networks(flag: str, text: str) -> tuple[Network, ...]:
    try:
        return parse_networks(text)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def _tls_switch(flag: str, on: bool, cert_file: str, key_file: str) -> bool:
    if on and not (cert_file and key_file):
        raise ConfigError(f"{flag} needs --tls-cert-file and --tls-key-file")
    return on


def _grpc_tls(args: argparse.Namespace) -> bool:
    if args.grpc_tls and not args.grpc:
        raise ConfigError("--grpc-tls needs the gRPC port (--grpc is off)")
    return _tls_switch("--grpc-tls", args.grpc_tls, args.tls_cert_file, args.tls_key_file)


def _positive(flag: str, value: int) -> int:
    if value <= 0:
        raise ConfigError(f"{flag} must be positive, got {value}")
    return value


def _non_negative(flag: str, value: int) -> int:
    if value < 0:
        raise ConfigError(f"{flag} must not be negative, got {value}")
    return value


# What an entry of a peer message can take besides its metadata, encoded: its id (ip:port:cluster), the
# instance's ip, cluster name, numbers and flags, and an item's service key (names are at most 256 characters).
ENTRY_OVERHEAD_BYTES = 2048


def fit_peer_batches(core: DistroConfig, metadata_max_bytes: int) -> DistroConfig:
    """``core`` with its snapshot chunks and replication batches made small enough that the largest entries
    the API accepts (``metadata_max_bytes`` of metadata each) still fit one peer-link frame. A message that
    does not fit can never be sent: a restarting node would wait for the chunk until its snapshot timed out,
    and a batch's changes would reach peers only by the next digest round. The defaults fit 4 KiB."""
    if metadata_max_bytes < 1:
        raise ConfigError(f"--metadata-max-bytes must be positive, got {metadata_max_bytes}")
    entry_bytes = metadata_max_bytes + ENTRY_OVERHEAD_BYTES
    room = PEER_MAX_FRAME_BYTES - 64 * 1024  # the message's own fields and the frame's header
    fits = room // entry_bytes
    if fits < 1:
        raise ConfigError(f"--metadata-max-bytes {metadata_max_bytes} is too large: an instance must fit a "
                          f"peer message of {PEER_MAX_FRAME_BYTES} bytes")
    if core.snapshot_chunk_entries <= fits and core.sync_batch_entries <= fits:
        return core
    return dataclasses.replace(core, snapshot_chunk_entries=min(core.snapshot_chunk_entries, fits),
                               sync_batch_entries=min(core.sync_batch_entries, fits))


def beat_timing_warning(core: DistroConfig) -> str | None:
    """A warning when clients told to beat every ``client_beat_interval_ms`` would flap between healthy and
    unhealthy: the heartbeat timeout must leave room for at least one late or lost beat (twice the interval).

    The Java client 1.4.2 beats at the interval the node announces in every beat answer (and sends its first
    beat one interval after registering), so a timeout below two intervals marks instances unhealthy
    between beats that arrive on time.
    """
    interval, timeout = core.client_beat_interval_ms, core.heartbeat_timeout_ms
    if timeout >= 2 * interval:
        return None
    return (
        f"--heartbeat-timeout-ms {timeout} is less than twice the beat interval announced to clients "
        f"(--client-beat-interval-ms {interval}): instances of clients that beat on time will flap between "
        f"healthy and unhealthy. Give --client-beat-interval-ms {max(1, timeout // 3)} (a third of the timeout) "
        f"or a longer timeout"
    )


def _check_offsets(port: int, peer_offset: int, grpc_offset: int | None) -> None:
    """The HTTP, peer-link and gRPC ports must be three different valid ports."""
    ports = {"--peer-port-offset": peer_offset, "--grpc-port-offset": grpc_offset}
    for flag, offset in ports.items():
        if offset is not None and (offset == 0 or not 0 < port + offset < 65536):
            raise ConfigError(f"{flag} {offset} puts that port at {port + offset}: it must be a port other than --port")
    if grpc_offset is not None and grpc_offset == peer_offset:
        raise ConfigError(
            f"--grpc-port-offset and --peer-port-offset are both {peer_offset}: the gRPC front door and the peer "
            "links need ports of their own (defaults: gRPC + 1000, peers + 1001)"
        )


def _secret_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _default_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    return host


def _is_self(peer: str, host: str, port: int, advertise: str) -> bool:
    if peer == advertise:
        return True
    peer_host, _, peer_port = peer.rpartition(":")
    if int(peer_port) != port:
        return False
    local = {"127.0.0.1", "localhost", "::1", host, socket.gethostname(), advertise.rpartition(":")[0]}
    return peer_host in local


def peer_link_address(http_address: str, offset: int) -> str:
    """The peer-link address of a member given its HTTP address."""
    host, _, port = http_address.rpartition(":")
    return f"{host}:{int(port) + offset}"


__all__ = [
    "WEAK_CLUSTER_SECRET_BYTES",
    "ConfigError",
    "NodeSettings",
    "beat_timing_warning",
    "build_parser",
    "parse_settings",
    "peer_link_address",
]
