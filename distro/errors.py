"""The one exception tree of the server side: every error the registry raises on purpose is a ``DistroError``.

    DistroError                     anything the registry raises on purpose
     ├── ValidationError            a client's request is invalid: a 400 (or ``status``) with ``message``
     │                              (also a ValueError; distro.model re-exports it)
     ├── ProtocolError              a peer sent a frame that is not a well-formed message
     │                              (also a ValueError; distro.codec re-exports it)
     ├── ConfigError                the node cannot start with these settings or flags
     ├── DataDirError               the node's data folder cannot be used (names the path and what to do)
     ├── LinkClosed                 a peer link ended or misbehaved (the runtime's peer links)
     ├── ClusterError               a local cluster could not start or stop (``distroctl local-cluster``)
     └── CtlError                   ends a ``distroctl`` command with ``message`` and exit ``code``

Every ``str()`` is a message a person can act on. The classes are plain (no IO, nothing imported), so the
pure core and the runtime around it (``cluster/``) share them. Catch ``DistroError`` to catch them all;
``ValidationError`` and ``ProtocolError`` stay ``ValueError`` subclasses because parsers that catch
``ValueError`` rely on it, while the others are not ``ValueError`` (code that catches ``ValueError`` around
a call must not swallow a ``CtlError`` or ``ConfigError`` raised inside it).
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "ConfigError",
    "CtlError",
    "DataDirError",
    "DistroError",
    "LinkClosed",
    "ProtocolError",
    "ValidationError",
]


class DistroError(Exception):
    """The root of every error the registry raises on purpose; ``str()`` says what went wrong."""


class ValidationError(DistroError, ValueError):
    """A request parameter is invalid; ``message`` is the text the client receives with a 400."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ProtocolError(DistroError, ValueError):
    """A peer sent something that is not a well-formed message; ``str()`` is a short reason."""


class ConfigError(DistroError):
    """The node cannot start with these settings; the message says why."""


class DataDirError(DistroError):
    """The node's data folder is unreadable, damaged, another node's or in use; the message names the path
    and what to do (the node refuses to start rather than lose what the folder holds)."""


class LinkClosed(DistroError):
    """A peer connection ended or misbehaved; ``str()`` says why."""


class ClusterError(DistroError):
    """A local cluster could not start or stop; the message says why."""


class CtlError(DistroError):
    """Ends a ``distroctl`` command with ``message`` on stderr and the non-zero exit ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
