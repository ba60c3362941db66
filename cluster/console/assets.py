"""The console's static files, loaded once from the package and served from memory by exact path.

Only files that are in ``static/`` when the node starts are served, each found by an exact lookup of the
request path in a dict: no request path is ever joined to a directory, so ``..``, encoded slashes, NUL bytes
or symlinks lead nowhere (they are simply not keys). ``/nacos/`` serves ``index.html``; ``/nacos`` redirects
there, so that relative URLs resolve as in Nacos.

Every answer carries a strict Content-Security-Policy (scripts, styles and fetches only from this origin, no
inline script or style, no framing, no plugins), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy:
no-referrer`` and an ETag. ``Cache-Control: no-cache`` makes the browser revalidate every time (a 304 of a
few bytes), so a node upgraded in place serves its new console at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from hashlib import blake2b
from importlib import resources
from importlib.resources.abc import Traversable

from cluster.http import Request, Response

PREFIX = "/nacos/"
INDEX = "index.html"
MAX_ASSET_BYTES = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 16 * 1024 * 1024

CONTENT_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cache-Control", "no-cache"),
)


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file as it is served."""

    body: bytes
    content_type: str
    etag: str


def _content_type(name: str) -> str | None:
    dot = name.rfind(".")
    return None if dot < 0 else CONTENT_TYPES.get(name[dot:].lower())


def _walk(folder: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
    for child in sorted(folder.iterdir(), key=lambda c: c.name):
        if child.name.startswith((".", "_")):
            continue
        if child.is_dir():
            yield from _walk(child, f"{prefix}{child.name}/")
        elif child.is_file():
            yield f"{prefix}{child.name}", child


def package_files() -> dict[str, bytes]:
    """Every servable file under ``cluster/console/static`` (relative path -> bytes)."""
    root = resources.files("cluster.console").joinpath("static")
    files: dict[str, bytes] = {}
    for relative, entry in _walk(root, ""):
        if _content_type(relative) is not None:
            files[relative] = entry.read_bytes()
    return files


def _etag_matches(header: str, etag: str) -> bool:
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


class StaticAssets:
    """The console's files by URL path (``/nacos/<relative path>``), answered from memory."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        total = 0
        self._assets: dict[str, Asset] = {}
        for relative, body in files.items():
            content_type = _content_type(relative)
            if content_type is None:
                raise ValueError(f"console asset with no known content type: {relative}")
            if len(body) > MAX_ASSET_BYTES:
                raise ValueError(f"console asset over {MAX_ASSET_BYTES} bytes: {relative}")
            total += len(body)
            etag = '"' + blake2b(body, digest_size=12).hexdigest() + '"'
            self._assets[PREFIX + relative] = Asset(body, content_type, etag)
        if total > MAX_TOTAL_BYTES:
            raise ValueError(f"console assets total over {MAX_TOTAL_BYTES} bytes")
        if PREFIX + INDEX not in self._assets:
            raise ValueError(f"console assets have no {INDEX}")
        self._assets[PREFIX] = self._assets[PREFIX + INDEX]

    @classmethod
    def from_package(cls) -> StaticAssets:
        """The files shipped in this package."""
        return cls(package_files())

    def paths(self) -> list[str]:
        """Every URL path served (``/nacos/`` and ``/nacos/<file>``), sorted."""
        return sorted(self._assets)

    def handles(self, method: str, path: str) -> bool:
        """True for a GET or HEAD of ``/nacos``, ``/nacos/`` or one of the files."""
        return method in ("GET", "HEAD") and (path == PREFIX.rstrip("/") or path in self._assets)

    def respond(self, request: Request) -> Response:
        """The answer to a request for which :meth:`handles` is true (404 otherwise)."""
        if request.path == PREFIX.rstrip("/"):
            location = PREFIX + (f"?{request.query}" if request.query else "")
            return Response(302, b"", "text/plain; charset=utf-8", [("Location", location), *SECURITY_HEADERS])
        asset = self._assets.get(request.path)
        if asset is None:
            return Response(404, b"not found", "text/plain; charset=utf-8", list(SECURITY_HEADERS))
        headers = [("ETag", asset.etag), *SECURITY_HEADERS]
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None and _etag_matches(if_none_match, asset.etag):
            return Response(304, b"", asset.content_type, headers)
        return Response(200, asset.body, asset.content_type, headers)


__all__ = ["CONTENT_SECURITY_POLICY", "PREFIX", "SECURITY_HEADERS", "Asset", "StaticAssets", "package_files"]
