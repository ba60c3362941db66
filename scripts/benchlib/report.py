"""Plots (matplotlib, optional) and the markdown report written from the results of one run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchlib import report_grpc, report_text
from benchlib.figures import fmt


def plots(results: dict[str, Any], out_dir: Path) -> list[str]:
    """Write the PNGs; returns their file names (none when matplotlib is missing)."""
    try:  # optional (the `bench` extra); its types are not needed to check ours
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    d = results["details"]["distro"]
    e = results["details"].get("etcd", {})
    rn = results["details"].get("rnacos", {})
    made = []
    for plot in (_converge_cdf, _register_throughput, _push_cdf, _heartbeat_ramp):
        name = plot(plt, d, e, rn, out_dir)
        if name is not None:
            made.append(name)
    name = report_grpc.plot(plt, d, out_dir, rn)
    if name is not None:
        made.append(name)
    return made


def _save(plt: Any, fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _log_ms_axis(plt: Any, ax: Any) -> None:
    """A log-scale millisecond axis labelled 1, 2, 5, 10, ... instead of powers of ten."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(plt.FixedLocator([0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())


def _cdf_axes(plt: Any, series: list[tuple[str, list[float]]], *, target_ms: float, xlabel: str) -> tuple[Any, Any]:
    """A figure with one empirical CDF per series, a target p99 line and a log-scale millisecond axis."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, xs in series:
        v = sorted(xs)
        ax.step(v, [(i + 1) / len(v) for i in range(len(v))], where="post", label=f"{label}, n={len(v)}")
    ax.axvline(target_ms, color="grey", linestyle=":", label=f"target p99 {target_ms:g} ms")
    ax.axhline(0.99, color="lightgrey", linestyle="--", linewidth=0.8)
    _log_ms_axis(plt, ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of samples")
    return fig, ax


def _converge_cdf(plt: Any, d: dict[str, Any], e: dict[str, Any], rn: dict[str, Any], out_dir: Path) -> str | None:
    """Convergence CDFs, ours and etcd's, on a log scale."""
    series = []
    main = d.get("main", {})
    if main.get("converge", {}).get("samples_ms"):
        series.append((f"ours ({main['converge']['method']})", main["converge"]["samples_ms"]))
    if main.get("converge_poll", {}).get("samples_ms"):
        series.append(("ours (poll)", main["converge_poll"]["samples_ms"]))
    if e.get("converge", {}).get("samples_ms"):
        series.append(("etcd (watch)", e["converge"]["samples_ms"]))
    if e.get("converge_poll", {}).get("samples_ms"):
        series.append(("etcd (serializable read poll)", e["converge_poll"]["samples_ms"]))
    if rn.get("main", {}).get("converge", {}).get("samples_ms"):
        series.append(("r-nacos (poll)", rn["main"]["converge"]["samples_ms"]))
    if not series:
        return None
    fig, ax = _cdf_axes(plt, series, target_ms=10,
                        xlabel="write on one node → visible on every node (ms, log scale)")
    bg = main.get("background", {}).get("ok_per_s")
    ebg = e.get("background", {}).get("ok_per_s")
    ax.set_title(f"Convergence under background writes (ours {fmt(bg)}/s, etcd {fmt(ebg)}/s)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    return _save(plt, fig, out_dir / "converge_cdf.png")


def _register_throughput(plt: Any, d: dict[str, Any], e: dict[str, Any], rn: dict[str, Any], out_dir: Path) -> str | None:
    """Registrations per second over the best closed-loop run, in 0.5 s windows."""
    main = d.get("main", {})
    lines = []
    if main.get("register", {}).get("timeline"):
        lines.append((f"ours ({main['register']['best']})", main["register"]))
    if e.get("register", {}).get("timeline"):
        lines.append((f"etcd ({e['register']['best']})", e["register"]))
    if rn.get("main", {}).get("register", {}).get("timeline"):
        lines.append((f"r-nacos ({rn['main']['register']['best']})", rn["main"]["register"]))
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, reg in lines:
        b = reg["bucket_s"]
        tl = reg["timeline"][:-1] or reg["timeline"]  # the last bucket is partial
        w = max(1, round(0.5 / b))  # 0.5 s windows
        xs, ys = [], []
        for i in range(0, len(tl) - w + 1, w):
            xs.append((i + w / 2) * b)
            ys.append(sum(tl[i : i + w]) / (w * b))
        ax.plot(xs, ys, label=label)
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("successful registrations per second")
    ax.set_title("Registration throughput (closed loop), three members each")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return _save(plt, fig, out_dir / "register_throughput.png")


def _push_cdf(plt: Any, d: dict[str, Any], e: dict[str, Any], rn: dict[str, Any], out_dir: Path) -> str | None:
    """Change to subscriber, as CDFs on a log scale (the tail shows, and no series hides another)."""
    main = d.get("main", {})
    series = []
    if main.get("push", {}).get("samples_ms"):
        series.append(("UDP subscriber (Nacos 1.x)", main["push"]["samples_ms"]))
    for mode, label in (("auto", "our SDK subscriber"), ("watch", "our SDK subscriber (watch)")):
        samples = main.get("sdk_push", {}).get(mode, {}).get("samples_ms")
        if samples:
            series.append((label, samples))
    if rn.get("main", {}).get("push", {}).get("samples_ms"):
        series.append(("r-nacos: UDP subscriber (Nacos 1.x)", rn["main"]["push"]["samples_ms"]))
    if not series:
        return None
    fig, ax = _cdf_axes(plt, series, target_ms=50,
                        xlabel="change on one node → subscriber of any node notified (ms, log scale)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    return _save(plt, fig, out_dir / "push_cdf.png")


def _heartbeat_ramp(plt: Any, d: dict[str, Any], e: dict[str, Any], rn: dict[str, Any], out_dir: Path) -> str | None:
    """Beats per second needed and answered at each step of the ramp."""
    systems = [(name, x.get("ramp", {}).get("steps", [])) for name, x in (("ours", d), ("r-nacos", rn))]
    systems = [(name, steps) for name, steps in systems if steps]
    if not systems:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    longest = max((steps for _, steps in systems), key=len)
    ax.plot([s["instances"] for s in longest], [s["beats_per_s_target"] for s in longest], "o--",
            label="beats/s needed")
    for name, steps in systems:
        ax.plot([s["instances"] for s in steps], [s["beats_per_s"] for s in steps], "o-",
                label=f"{name}: beats/s answered ok")
        for s in steps:
            if not s["ok"]:
                ax.annotate(f"{name} not steady", (s["instances"], s["beats_per_s"]), textcoords="offset points",
                            xytext=(0, -14), ha="center", color="red", fontsize=8)
    ax.set_xlabel("heartbeating instances")
    ax.set_ylabel("beats per second")
    ax.set_title("Heartbeat ramp")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return _save(plt, fig, out_dir / "heartbeat_ramp.png")


def markdown(results: dict[str, Any], md_path: Path, plot_dir: Path | None) -> str:
    return report_text.render(results, md_path, plot_dir)
