"""The peer link's cryptography: handshake proofs, per-connection keys, and the MAC on every frame.

Stdlib only (``hmac``, ``hashlib``). Everything is derived from the cluster secret *S* and the handshake
*transcript* ``T = msgpack([version, dialer_id, dialer_address, acceptor_id, acceptor_address, nonce_d,
nonce_a])``, where both nonces are 32 fresh random bytes, one from each end::

    prk              = HMAC-SHA256(key=nonce_d + nonce_a, msg=S)        HKDF-Extract (RFC 5869), salt = nonces
    key(label)       = HMAC-SHA256(prk, label + T + 0x01)               HKDF-Expand, one 32-byte block
    dialer proof     = key(b"distro-peer-v2 dialer proof")
    acceptor proof   = key(b"distro-peer-v2 acceptor proof")
    frame key        = key(b"distro-peer-v2 dialer frames")

A proof is a key the other side can only compute with the secret; it binds both ids, both addresses,
both nonces and the protocol version, so it cannot be replayed into another connection or reflected
(the two labels differ). The frame key is new for every connection (fresh nonces on both sides).

Every frame after the handshake is ``length (4 bytes, big-endian) + payload + tag`` where
``tag = HMAC-SHA256(frame key, seq + payload)[:16]`` and ``seq`` is the frame's 8-byte big-endian sequence
number on that connection (0, 1, 2, ...; never sent, each end counts). A forged, altered, replayed,
reordered, dropped-then-continued or truncated frame fails the check. Only the dialer sends frames on
a connection (links are one-way), so one key and one sequence suffice; the acceptor writing anything
after the handshake closes the connection.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any

import msgpack

__all__ = [
    "NONCE_BYTES",
    "PROTOCOL_VERSION",
    "TAG_BYTES",
    "FrameOpener",
    "FrameSealer",
    "SessionKeys",
    "session_keys",
    "transcript",
]

PROTOCOL_VERSION = 3  # 3: a frame carries an array of messages (2: one message per frame)
NONCE_BYTES = 32
TAG_BYTES = 16
_SEQ = struct.Struct(">Q")
_LEN = struct.Struct(">I")
_LABEL_DIALER_PROOF = b"distro-peer-v2 dialer proof"
_LABEL_ACCEPTOR_PROOF = b"distro-peer-v2 acceptor proof"
_LABEL_FRAMES = b"distro-peer-v2 dialer frames"


def transcript(dialer: tuple[str, str], acceptor: tuple[str, str], nonce_d: bytes, nonce_a: bytes) -> bytes:
    """The handshake transcript every proof and key is bound to."""
    packed: bytes = msgpack.packb(
        [PROTOCOL_VERSION, dialer[0], dialer[1], acceptor[0], acceptor[1], nonce_d, nonce_a],
        use_bin_type=True,
    )
    return packed


class SessionKeys:
    """The proofs and the frame key of one connection for one secret."""

    __slots__ = ("acceptor_proof", "dialer_proof", "frame_key")

    def __init__(self, dialer_proof: bytes, acceptor_proof: bytes, frame_key: bytes) -> None:
        self.dialer_proof = dialer_proof
        self.acceptor_proof = acceptor_proof
        self.frame_key = frame_key


def session_keys(secret: bytes, nonce_d: bytes, nonce_a: bytes, transcript_bytes: bytes) -> SessionKeys:
    """HKDF-SHA256 (extract with both nonces as the salt, then one expand block per label)."""
    prk = hmac.digest(nonce_d + nonce_a, secret, "sha256")

    def expand(label: bytes) -> bytes:
        return hmac.digest(prk, label + transcript_bytes + b"\x01", "sha256")

    return SessionKeys(expand(_LABEL_DIALER_PROOF), expand(_LABEL_ACCEPTOR_PROOF), expand(_LABEL_FRAMES))


class FrameSealer:
    """The sending end of a connection: frames with the next sequence number's tag."""

    __slots__ = ("_base", "seq")

    def __init__(self, frame_key: bytes) -> None:
        self._base: Any = hmac.new(frame_key, digestmod=hashlib.sha256)
        self.seq = 0

    def seal(self, payload: bytes) -> tuple[bytes, bytes]:
        """``(length prefix, tag)`` for ``payload``, the next frame: send prefix + payload + tag."""
        mac = self._base.copy()
        mac.update(_SEQ.pack(self.seq))
        mac.update(payload)
        self.seq += 1
        return _LEN.pack(len(payload)), mac.digest()[:TAG_BYTES]


class FrameOpener:
    """The receiving end of a connection: checks each frame's tag against the next sequence number."""

    __slots__ = ("_base", "seq")

    def __init__(self, frame_key: bytes) -> None:
        self._base: Any = hmac.new(frame_key, digestmod=hashlib.sha256)
        self.seq = 0

    def check(self, payload: bytes | bytearray | memoryview, tag: bytes | bytearray | memoryview) -> bool:
        """True when ``tag`` is right for ``payload`` as the next frame (then the sequence moves on)."""
        mac = self._base.copy()
        mac.update(_SEQ.pack(self.seq))
        mac.update(payload)
        if not hmac.compare_digest(mac.digest()[:TAG_BYTES], tag):
            return False
        self.seq += 1
        return True
