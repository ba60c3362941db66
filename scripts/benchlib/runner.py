"""Running the load generator for ``scripts/bench``: one-shot and background runs, the run-queue watch,
py-spy profiles, and the closed-loop runs that every system gets (registration sweep, any workload for a
fixed time) with the servers' CPU time per successful request read from ``/proc``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchlib.loadgen import percentiles
from benchlib.procs import ROOT, cpu_seconds, log, schedstat


# ----------------------------------------------------------------------------------------------
# the load generator as a subprocess
# ----------------------------------------------------------------------------------------------
def loadgen_cmd(args: list[str], cpu: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "benchlib.loadgen", *args]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    return cmd


def loadgen_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "scripts") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run_loadgen(args: list[str], cpu: str | None = None, timeout: float = 600) -> dict[str, Any]:
    res = subprocess.run(loadgen_cmd(args, cpu), capture_output=True, text=True, env=loadgen_env(), timeout=timeout,
                         check=False)
    if res.returncode != 0 or not res.stdout.strip():
        raise RuntimeError(f"loadgen failed ({res.returncode}): {res.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(res.stdout)
    return out


class Background:
    """A loadgen process (or another ``benchlib`` module that prints a JSON summary when it gets SIGTERM, such
    as ``benchlib.pauseprobe``) running while probes measure; ``stop()`` ends it and returns its summary."""

    running: list[Background] = []

    def __init__(self, args: list[str], module: str = "benchlib.loadgen") -> None:
        cmd = loadgen_cmd(args)
        cmd[cmd.index("benchlib.loadgen")] = module
        self.popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=loadgen_env(), start_new_session=True)
        Background.running.append(self)

    def stop(self) -> dict[str, Any]:
        if self in Background.running:
            Background.running.remove(self)
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            out, err = self.popen.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            out, err = self.popen.communicate()
        try:
            result: dict[str, Any] = json.loads(out)
        except ValueError:
            raise RuntimeError(f"background loadgen failed (exit status {self.popen.returncode}): "
                               f"{err[-2000:]!r}") from None
        return result

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


class Steered:
    """A loadgen open loop steered over stdin (``--control``, see ``benchlib.openloop``): ``set`` changes its
    schedule, ``report`` returns the summary of the window since the previous report."""

    def __init__(self, args: list[str], timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        # its stderr goes to a file: a pipe nobody reads until the end could fill up and stall the generator
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()/kill()
        self.popen = subprocess.Popen(loadgen_cmd(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self.stderr, env=loadgen_env(), start_new_session=True, text=True)

    def _ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.popen.stdin.write(json.dumps(msg) + "\n")
        self.popen.stdin.flush()
        ready, _, _ = select.select([self.popen.stdout], [], [], self.timeout_s)
        line = self.popen.stdout.readline() if ready else ""
        if not line:
            self.kill()
            self.stderr.seek(0)
            err = self.stderr.read()
            raise RuntimeError(f"steered loadgen did not answer {msg} (exit status {self.popen.returncode}): "
                               f"{err[-2000:]}")
        out: dict[str, Any] = json.loads(line)
        return out

    def set(self, count: int, rate: float) -> None:
        self._ask({"cmd": "set", "count": count, "rate": rate})

    def report(self) -> dict[str, Any]:
        return self._ask({"cmd": "report"})

    def stop(self) -> None:
        """Close its stdin (it ends the run) and wait for it; its final summary is not needed."""
        if self.popen.poll() is None:
            try:
                self.popen.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.stderr.close()

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


# ----------------------------------------------------------------------------------------------
# profiling (optional)
# ----------------------------------------------------------------------------------------------
class Profiler:
    """py-spy recordings of the nodes for ``--profile DIR`` (nothing without it, or without py-spy)."""

    def __init__(self, out_dir: Path | None) -> None:
        self.out_dir = out_dir
        # The bench's own venv first (the `bench` extra installs py-spy there; scripts/bench does not put
        # that venv on PATH), then PATH.
        self.exe = (os.environ.get("PY_SPY") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
                    or shutil.which("py-spy"))
        self.running: list[subprocess.Popen[bytes]] = []
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            if self.exe is None:
                log("--profile: py-spy not found (pip install -e '.[bench]' brings it, or set PY_SPY); not profiling")

    def start(self, label: str, pids: dict[str, int], seconds: float, timeline: bool = False) -> None:
        """Record ``pids`` for ``seconds``: folded stacks (raw) of each, a flame graph of n1, and with
        ``timeline`` a speedscope file of each too (its samples in time order, so a stall can be found)."""
        if self.out_dir is None or self.exe is None:
            return
        formats = [("raw", "txt"), ("flamegraph", "svg")] + ([("speedscope", "speedscope.json")] if timeline else [])
        for name, pid in pids.items():
            for fmt, ext in formats:
                if fmt == "flamegraph" and name != "n1":
                    continue
                out = self.out_dir / f"{label}-{name}.{ext}"
                self.running.append(subprocess.Popen(
                    [self.exe, "record", "--nonblocking", "--pid", str(pid), "-d", str(int(seconds)), "-r", "250",
                     "--format", fmt, "-o", str(out)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))

    def wait(self) -> None:
        for p in self.running:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.running.clear()


class SchedWatch:
    """Run-queue wait of a set of processes over an interval: how long they were runnable but had no CPU."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.start = [schedstat(p) for p in pids]

    def result(self) -> dict[str, float | None]:
        end = [schedstat(p) for p in self.pids]
        run = sum(e[0] - s[0] for s, e in zip(self.start, end, strict=True))
        wait = sum(e[1] - s[1] for s, e in zip(self.start, end, strict=True))
        return {"cpu_s": round(run, 2), "runqueue_wait_s": round(wait, 2),
                "wait_per_cpu": round(wait / run, 2) if run > 0 else None}


def register_sweep(m: dict[str, Any], workload: str, addrs: list[str], pids: list[int], label: str,
                   profiler: Profiler, base0: int) -> dict[str, Any]:
    runs = []
    for j, (conns, depth) in enumerate(m["reg_configs"]):
        cpu0 = sum(cpu_seconds(p) for p in pids)
        sched = SchedWatch(pids)
        if j == 0:
            profiler.start(f"{label}-register", {f"n{i + 1}": p for i, p in enumerate(pids)}, m["reg_s"] - 1)
        r = run_loadgen(["--workload", workload, "--targets", ",".join(addrs), "--connections", str(conns),
                         "--depth", str(depth), "--duration", str(m["reg_s"]), "--services", str(m["services"]),
                         "--prefix", f"reg{j}", "--base", str(base0 + j * 1_000_000)])
        profiler.wait()
        cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        r["server_cpu_s"] = round(cpu, 2)
        r["server_cpu_us_per_ok"] = round(cpu / r["ok"] * 1e6, 1) if r["ok"] else None
        r["server_cores_used"] = round(cpu / r["elapsed_s"], 2) if r["elapsed_s"] else None
        r["server_sched"] = sched.result()
        r["config"] = f"{conns} connections x depth {depth}"
        runs.append(r)
        log(f"  {label} {r['config']}: {r['ok_per_s']:,.0f}/s ok, {r['failed']} failed, "
            f"p99 {r['latency_ms']['p99']} ms, server CPU {r['server_cpu_us_per_ok']} us/registration "
            f"({r['server_cores_used']} cores busy; waited {r['server_sched']['wait_per_cpu']} s for a CPU "
            f"per CPU-second)"
            + (f", errors {r['errors']}" if r["errors"] else ""))
    best = max(runs, key=lambda r: r["ok_per_s"])
    return {"register_per_s": best["ok_per_s"], "best": best["config"], "runs": runs,
            "timeline": best["timeline"], "bucket_s": best["bucket_s"]}


def bg_args(m: dict[str, Any], workload: str, addrs: list[str], base: int) -> list[str]:
    rate = m["bg_rate"]
    return ["--workload", workload, "--targets", ",".join(addrs), "--connections", str(max(12, int(rate / 25))),
            "--rate", str(rate), "--duration", "600", "--services", str(m["bg_services"]), "--prefix", "bg",
            "--base", str(base)]


def summarize_latency(samples: list[float]) -> dict[str, Any]:
    return percentiles(samples)


def closed_run(m: dict[str, Any], workload: str, addrs: list[str], pids: list[int], extra: list[str],
               connections: int = 48, depth: int = 1, profile: tuple[Profiler, str] | None = None) -> dict[str, Any]:
    """``workload`` closed loop for the mode's ``reg_s`` seconds, with the servers' CPU per successful request
    (and py-spy profiles of the servers, labelled, when ``profile`` is given)."""
    cpu0 = sum(cpu_seconds(p) for p in pids)
    sched = SchedWatch(pids)
    if profile is not None:
        profile[0].start(profile[1], {f"n{i + 1}": p for i, p in enumerate(pids)}, m["reg_s"] - 1)
    r = run_loadgen(["--workload", workload, "--targets", ",".join(addrs), "--connections", str(connections),
                     "--depth", str(depth), "--duration", str(m["reg_s"]), *extra])
    if profile is not None:
        profile[0].wait()
    cpu = sum(cpu_seconds(p) for p in pids) - cpu0
    out = {k: r[k] for k in ("ok", "failed", "ok_per_s", "elapsed_s", "errors", "latency_ms", "cpu_us_per_request")}
    out["config"] = f"{connections} connections x depth {depth}"
    out["server_cpu_s"] = round(cpu, 2)
    out["server_cpu_us_per_ok"] = round(cpu / r["ok"] * 1e6, 1) if r["ok"] else None
    out["server_cores_used"] = round(cpu / r["elapsed_s"], 2) if r["elapsed_s"] else None
    out["server_sched"] = sched.result()
    log(f"  {workload} {out['config']}: {r['ok_per_s']:,.0f}/s ok, {r['failed']} failed, "
        f"p99 {r['latency_ms']['p99']} ms, server CPU {out['server_cpu_us_per_ok']} us/request "
        f"({out['server_cores_used']} cores busy; waited {out['server_sched']['wait_per_cpu']} s for a CPU per "
        "CPU-second)" + (f", errors {r['errors']}" if r["errors"] else ""))
    return out
