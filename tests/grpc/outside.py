"""Outside Nacos 2.x/3.x clients from PyPI, driven from synchronous tests.

- :class:`Nacos3Client`: nacos-sdk-python 3.x in its own venv (``.venv-nacos3``, which ``scripts/test``
  creates: it cannot share a venv with nacos-sdk-python 0.1.17), run as a child process that reads JSON
  commands (tests/grpc/drivers/nacos3_driver.py).
- :class:`RustClient`: the official Rust SDK through its Python binding (``nacos-sdk-rust-binding-py``,
  installed with the test extra), in this process.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NACOS3_VENV = Path(os.environ.get("DISTRO_NACOS3_VENV", ROOT / ".venv-nacos3"))
DRIVER = Path(__file__).resolve().parent / "drivers" / "nacos3_driver.py"
NACOS3_VERSION = "3.2.0"


def nacos3_python() -> Path:
    """The interpreter of the nacos-sdk-python 3.x venv; a clear error when ``scripts/test`` has not made it."""
    python = NACOS3_VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(
            f"{python} is missing: run scripts/test once, or: python3 -m venv {NACOS3_VENV} && "
            f"{NACOS3_VENV}/bin/pip install nacos-sdk-python=={NACOS3_VERSION}"
        )
    return python


class Nacos3Client:
    """One nacos-sdk-python 3.x naming client (a child process)."""

    def __init__(
        self,
        servers: list[str],
        work_dir: Path,
        *,
        credentials: tuple[str, str] | None = None,
        tls: tuple[str, str, str] | None = None,
    ) -> None:
        """``tls``: (CA, certificate, key) PEM files: the SDK then dials gRPC over TLS, verifying the node."""
        args = [str(nacos3_python()), str(DRIVER), ",".join(servers), *(credentials or ())]
        env = {**os.environ, "NACOS_DRIVER_DIR": str(work_dir)}
        if tls is not None:
            env["NACOS_DRIVER_TLS"] = ",".join(tls)
        work_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = work_dir / "driver-stderr.log"
        self._stderr = open(self.log_path, "wb")  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env=env, text=True, bufsize=1,
        )
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.pushes: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._seq = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        ready = self.replies.get(timeout=60)
        if ready.get("event") != "ready":
            raise RuntimeError(f"the nacos3 driver did not start: {ready} {self.stderr()}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("event") == "push":
                with self._lock:
                    self.pushes.append(message)
            else:
                self.replies.put(message)

    def stderr(self) -> str:
        """What the driver and the SDK wrote to stderr (for failure messages)."""
        return self.log_path.read_text(errors="replace")[-3000:]

    def call(self, op: str, timeout_s: float = 30, **args: Any) -> Any:
        """Run one command; its result, or AssertionError with the SDK's error."""
        self._seq += 1
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"id": self._seq, "op": op, **args}) + "\n")
        self.process.stdin.flush()
        while True:
            reply = self.replies.get(timeout=timeout_s)
            if reply.get("reply") == self._seq:
                break
        assert reply["ok"], f"{op} failed: {reply['result']}\n{self.stderr()}"
        return reply["result"]

    def pushed(self, service: str) -> list[list[tuple[str, int]]]:
        """The host lists pushed so far for ``service``, oldest first."""
        with self._lock:
            return [[(h["ip"], h["port"]) for h in p["hosts"]] for p in self.pushes if p["service"] == service]

    def close(self) -> None:
        """Shut the SDK down cleanly (it closes its connection) and end the process."""
        try:
            if self.process.poll() is None:
                self.call("shutdown", timeout_s=15)
        finally:
            self.kill()

    def kill(self) -> None:
        """End the process at once (its connection drops without a goodbye)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self._stderr.close()


class RustClient:
    """The official Rust SDK's naming client (``nacos-sdk-rust-binding-py``), usable from synchronous tests.

    The binding's blocking client keeps the GIL while it waits for an answer, so a push that arrives
    meanwhile (the listener needs the GIL) deadlocks it. Its asyncio client does not: this class runs it
    on an event loop in a thread of its own and waits for each call's result.
    """

    def __init__(self, servers: list[str], *, app_name: str = "distro-test") -> None:
        import asyncio

        import nacos_sdk_rust_binding_py as rust

        self._asyncio = asyncio
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        options = rust.ClientOptions(",".join(servers), "", app_name=app_name)
        self.client = self._run(self._make(rust.AsyncNacosNamingClient, options))

    @staticmethod
    async def _make(factory: Any, options: Any) -> Any:
        return factory(options)

    def _run(self, coroutine: Any, timeout_s: float = 30) -> Any:
        return self._asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def call(self, method: str, *args: Any) -> Any:
        """Call one of the client's methods (``register_instance``, ``subscribe``...) and wait for it."""

        async def invoke() -> Any:
            return await getattr(self.client, method)(*args)

        return self._run(invoke())

    def close(self) -> None:
        """Drop the client and stop the loop. The binding has no shutdown call: the SDK's connection (and
        so its instances) lives on until this process ends."""

        async def drop() -> None:
            self.client = None

        self._run(drop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def rust_instance(ip: str, port: int, **fields: Any) -> Any:
    """A ``NacosServiceInstance``."""
    import nacos_sdk_rust_binding_py as rust

    return rust.NacosServiceInstance(ip, port, **fields)


def poll(predicate: Any, what: str, timeout_s: float = 20.0) -> Any:
    """Poll until ``predicate()`` is truthy; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


__all__ = ["NACOS3_VERSION", "Nacos3Client", "RustClient", "nacos3_python", "poll", "rust_instance"]
