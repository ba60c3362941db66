"""The SDK's disk copy of every service it looked up: one JSON file per service, written atomically.

Layout: ``<cache_dir>/<namespace>/<group@@service>[@@<clusters>].json`` with the name percent-encoded
(``DEFAULT_GROUP%40%40goods-service.json``); the content is the ``instance/list`` JSON as the server sent
it (Nacos's DiskCache keeps ``jsonFromServer`` the same way). A write goes to a temporary file in the
same directory, is flushed to disk, then renamed over the old file, so a reader (or a crash) never sees
half a file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from urllib.parse import quote

MAX_FILE_BYTES = 16 * 1024 * 1024


class DiskCache:
    """Reads and writes service files under ``root/<namespace>``."""

    def __init__(self, root: str | os.PathLike[str], namespace: str) -> None:
        self.root = Path(root)
        self.directory = self.root / quote(namespace, safe="")

    def path_for(self, grouped: str, clusters: str) -> Path:
        """The file of one service and cluster filter."""
        name = grouped + (f"@@{clusters}" if clusters else "")
        return self.directory / (quote(name, safe="") + ".json")

    def write(self, grouped: str, clusters: str, raw: str) -> None:
        """Replace the file atomically (temp file, fsync, rename)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path_for(grouped, clusters)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def read(self, grouped: str, clusters: str) -> str | None:
        """The stored JSON, or None when there is none (or it cannot be read)."""
        path = self.path_for(grouped, clusters)
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                return None
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None


__all__ = ["DiskCache"]
