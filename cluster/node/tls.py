"""TLS for a node's listeners and for the peer link's dialer: every ``ssl.SSLContext`` is built here.

A node's TLS identity is three PEM files (``--tls-cert-file``, ``--tls-key-file``, ``--tls-ca-file``),
held in :class:`TlsFiles`. The stdlib ``ssl`` module does the work, through ``trio.SSLStream``:

* :func:`server_context` for anything that accepts connections: the client HTTP port, the gRPC port,
  the peer port. ``require_client_cert=True`` (the peer port, when a CA is given) makes the other end
  present a certificate signed by the CA: mutual TLS. :func:`grpc_server_context` is the gRPC port's:
  it offers ALPN ``h2``, which gRPC clients insist on over TLS.
* :func:`client_context` for the peer link's dialer: it presents this node's certificate and, when a CA
  is given, verifies the acceptor's chain against it. Host names are not checked: the CA is the
  cluster's own, and any certificate it signed is a member (the peer handshake then proves the cluster
  secret on top, and names the node).
* :func:`handshake` runs the TLS handshake of a wrapped stream under a deadline.

Without a CA file, certificates are not verified by either side: the connection is encrypted, and
integrity against a man in the middle comes from the peer link's own handshake and frame MACs
(cluster/node/peerauth.py), not from TLS.

Contexts allow TLS 1.2 and 1.3 only, with the ``ssl`` module's default ciphers.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio

from distro.errors import ConfigError, LinkClosed

__all__ = [
    "GRPC_ALPN",
    "TlsFiles",
    "TlsHandshakeError",
    "client_context",
    "grpc_server_context",
    "handshake",
    "server_context",
    "tls_files",
]

GRPC_ALPN = ("h2",)
"""The ALPN protocols of the gRPC port: HTTP/2 only (gRPC clients refuse a TLS server that does not select h2)."""


class TlsHandshakeError(LinkClosed):
    """The TLS handshake failed or did not finish in time; ``str()`` says why and ``timed_out`` which."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class TlsFiles:
    """Paths of one node's PEM files: its certificate chain, its private key, and the CA bundle that peers
    are verified against ("" = nobody is verified)."""

    cert_file: str
    key_file: str
    ca_file: str = ""


def tls_files(cert_file: str, key_file: str, ca_file: str = "") -> TlsFiles | None:
    """The TLS identity from the three flags (None when TLS is off), checked by loading it once.

    Raises :class:`~distro.errors.ConfigError` for a key without a certificate (or the reverse), a CA
    without a certificate, or files that are missing, unreadable or do not match.
    """
    if not cert_file and not key_file:
        if ca_file:
            raise ConfigError("--tls-ca-file needs --tls-cert-file and --tls-key-file")
        return None
    if not cert_file or not key_file:
        raise ConfigError("TLS needs both --tls-cert-file and --tls-key-file")
    files = TlsFiles(cert_file, key_file, ca_file)
    server_context(files, require_client_cert=bool(ca_file))
    client_context(files)
    return files


def _base_context(purpose: ssl.Purpose, files: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(files.cert_file, files.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the TLS certificate {files.cert_file!r} with key {files.key_file!r}: {exc}"
        ) from None
    return ctx


def _load_ca(ctx: ssl.SSLContext, ca_file: str) -> None:
    try:
        ctx.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS CA file {ca_file!r}: {exc}") from None


def server_context(
    files: TlsFiles, *, require_client_cert: bool = False, alpn: Sequence[str] = ()
) -> ssl.SSLContext:
    """A context for a listener. With ``require_client_cert`` (needs ``files.ca_file``) a client must
    present a certificate that the CA signed; ``alpn`` lists the protocols offered (``("h2",)`` for gRPC)."""
    ctx = _base_context(ssl.Purpose.CLIENT_AUTH, files)
    if require_client_cert and not files.ca_file:
        raise ConfigError("requiring client certificates needs --tls-ca-file")
    return _verified_by(ctx, files.ca_file if require_client_cert else None, alpn)


def grpc_server_context(files: TlsFiles) -> ssl.SSLContext:
    """The gRPC port's context: the node's certificate, ALPN ``h2``, client certificates not asked for
    (clients authenticate with access tokens, as on the HTTP port)."""
    return server_context(files, alpn=GRPC_ALPN)


def client_context(files: TlsFiles, *, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """A context for dialing a peer: presents our certificate; verifies the peer's chain against
    ``files.ca_file`` when given (no host-name check), verifies nothing otherwise."""
    ctx = _base_context(ssl.Purpose.SERVER_AUTH, files)
    ctx.check_hostname = False
    return _verified_by(ctx, files.ca_file, alpn)


def _verified_by(ctx: ssl.SSLContext, ca_file: str | None, alpn: Sequence[str]) -> ssl.SSLContext:
    """``ctx`` finished: with ``ca_file``, the other side must present a certificate that CA signed
    (``CERT_REQUIRED``); without, nothing is verified (``CERT_NONE``); ``alpn`` offered when given."""
    if ca_file:
        _load_ca(ctx, ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


async def handshake(stream: trio.SSLStream[Any], timeout_s: float) -> None:
    """Run the TLS handshake within ``timeout_s``; :class:`TlsHandshakeError` says why it failed."""
    try:
        with trio.fail_after(timeout_s):
            await stream.do_handshake()
    except trio.TooSlowError:
        raise TlsHandshakeError(f"TLS handshake not done within {timeout_s:g} s", timed_out=True) from None
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        raise TlsHandshakeError(f"TLS handshake failed: {cause or exc}") from None
