"""The report of ``scripts/bench`` (figures, the text table, docs/benchmarks.md, the gRPC plot) states the size of
the services the list phase listed, and shows r-nacos's gRPC figures beside ours.

Rendered from the recorded run (docs/bench/results.json) with the parts under test filled in by hand: no
cluster runs here (``test_bench_smoke`` runs the phases themselves).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchlib import report, report_text
from benchlib.figures import figures, list_size, table

ROOT = Path(__file__).resolve().parents[2]
RECORDED: dict[str, Any] = json.loads((ROOT / "docs" / "bench" / "results.json").read_text())


def _results(list_sizes: dict[str, tuple[int, int]] | None) -> dict[str, Any]:
    """The recorded run, its list runs given the (services, instances per service) of ``list_sizes`` (per
    system: "distro", "rnacos"), or none at all."""
    results = copy.deepcopy(RECORDED)
    for system in ("distro", "rnacos"):
        run = results["details"][system]["main"]["list"]
        run.pop("services", None)
        run.pop("instances_per_service", None)
        if list_sizes and system in list_sizes:
            run["services"], run["instances_per_service"] = list_sizes[system]
    return results


def _grpc(per_s: float, cpu_us: int, http_per_s: float, p99_ms: float, connections: int, failed: int,
          bytes_per_connection: int) -> dict[str, Any]:
    """A gRPC phase's results as ``benchlib.grpcbench`` writes them without grpcio's rounds (r-nacos's)."""
    raw = {"connections": 48, "seconds": 8.0, "ok": int(per_s * 8), "errors": 0, "per_s": per_s,
           "client_cpu_us_per_call": 60.0, "server_cpu_us_per_reg": cpu_us}
    http = {"ok": int(http_per_s * 8), "failed": 0, "per_s": http_per_s, "server_cpu_us_per_reg": cpu_us,
            "client_cpu_us_per_call": 55.0}
    return {
        "register": {**raw, "client": "grpcraw", "rounds": [raw], "http": {**http, "rounds": [http]},
                     "ratio": round(per_s / http_per_s, 2)},
        "push": {"samples": 100, "received": 97, "coalesced_or_lost": 3, "p50_ms": p99_ms / 3, "p99_ms": p99_ms,
                 "max_ms": p99_ms + 1},
        "hold": {"connections": connections, "failed_setups": failed, "setup_s": 4.0,
                 "open_per_node": [connections // 3] * 3, "listed_per_node": [connections - failed] * 3,
                 "alive_at_end": connections - failed, "node_rss_mb": [60, 60, 60],
                 "bytes_per_connection": bytes_per_connection},
    }


def test_the_list_size_is_stated_in_the_table_and_on_the_page(tmp_path: Path) -> None:
    results = _results({"distro": (64, 100), "rnacos": (64, 100)})
    figures(results)
    size = "64 services of 100 instances each, registered for it (ours and r-nacos alike)"
    assert list_size(results) == size
    assert f"list_per_s lists {size}" in table(results)
    page = report_text.render(results, tmp_path / "benchmarks.md", None)
    assert f"`list_per_s` lists {size}." in page
    method = next(line for line in page.splitlines() if line.startswith("- `list_per_s`"))
    assert size in method and "exactly that many instances" in method


def test_a_run_before_the_list_set_says_its_lists_were_not_like_for_like(tmp_path: Path) -> None:
    results = _results(None)
    figures(results)
    assert list_size(results) is None
    assert "list_per_s lists" not in table(results)
    page = report_text.render(results, tmp_path / "benchmarks.md", None)
    method = next(line for line in page.splitlines() if line.startswith("- `list_per_s`"))
    assert "not like for like" in method


def test_lists_of_different_sizes_are_called_out() -> None:
    results = _results({"distro": (64, 100), "rnacos": (64, 50)})
    assert list_size(results) == ("ours: 64 services of 100 instances each; r-nacos: 64 services of 50 instances "
                                  "each (NOT the same size)")


def test_rnacos_grpc_figures_sit_beside_ours(tmp_path: Path) -> None:
    results = _results({"distro": (64, 100), "rnacos": (64, 100)})
    results["details"]["distro"]["grpc"] = _grpc(4000.0, 300, 4500.0, 6.0, 3000, 0, 30_000)
    results["details"]["rnacos"]["grpc"] = _grpc(2000.0, 450, 3000.0, 480.0, 3000, 10, 20_000)
    figures(results)
    assert results["distro"]["grpc_register_per_s"] == 4000.0
    assert results["rnacos"]["grpc_register_per_s"] == 2000.0
    assert results["rnacos"]["cpu_us_per_grpc_register"] == 450
    assert results["rnacos"]["grpc_push_p99_ms"] == 480.0
    assert results["rnacos"]["grpc_clients_held"] == 2990
    assert results["rnacos"]["grpc_bytes_per_connection"] == 20_000
    text = table(results).splitlines()
    row = next(line for line in text if line.startswith("grpc_register_per_s"))
    assert "4,000.0" in row and "2,000.0" in row and "2.00x" in row and row.endswith("met") and "NOT" not in row
    page = report_text.render(results, tmp_path / "benchmarks.md", None)
    assert "### Ours and r-nacos 0.8.8 over gRPC, same run" in page
    lines = page.splitlines()
    side = next(line for line in lines if line.startswith("| gRPC registrations/s (lean client, best round)"))
    assert side == "| gRPC registrations/s (lean client, best round) | 4,000.0 | 2,000.0 | 2.00x |"
    push = next(line for line in lines if line.startswith("| change -> gRPC subscriber, p50 / p99 ms"))
    assert "480.0 (97 of 100)" in push
    memory = next(line for line in lines if line.startswith("| node memory per connection, B"))
    assert memory == "| node memory per connection, B | 30,000 | 20,000 | 1.50x |"
    assert "r-nacos, every round (registrations/s): v1 HTTP 3,000.0; gRPC, lean client 2,000.0." in page


def test_a_run_without_rnacos_grpc_keeps_our_grpc_section(tmp_path: Path) -> None:
    results = _results({"distro": (64, 100), "rnacos": (64, 100)})
    results["details"]["rnacos"].pop("grpc", None)  # a run whose r-nacos phases had no gRPC one
    figures(results)
    assert results["rnacos"]["grpc_register_per_s"] is None
    page = report_text.render(results, tmp_path / "benchmarks.md", None)
    assert "## gRPC front door" in page
    assert "over gRPC, same run" not in page


def test_the_grpc_plot_has_rnacos_series(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results = _results(None)
    results["details"]["rnacos"]["grpc"] = _grpc(2000.0, 450, 3000.0, 480.0, 3000, 10, 20_000)
    figures(results)
    made = report.plots(results, tmp_path)
    assert "grpc_register.png" in made
    assert (tmp_path / "grpc_register.png").stat().st_size > 0


def _recorded_with_scale() -> tuple[dict[str, Any], dict[str, Any]]:
    """A copy of the recorded run and its scale section (the test is skipped when the run has none)."""
    results = copy.deepcopy(RECORDED)
    scale = results["details"]["distro"].get("scale")
    if scale is None:
        pytest.skip("the recorded run has no scale section")
    return results, scale


def test_the_scale_page_gives_the_big_lists_head_times_when_the_run_has_them(tmp_path: Path) -> None:
    """The big-list step times each list until its head is read as well as in all (the render, then the
    transfer); a run recorded before that says nothing of heads."""
    results, scale = _recorded_with_scale()
    scale["big_list"].pop("first_list_after_change_head_ms", None)
    assert "its head, sent once the node had rendered" not in report_text.render(results, tmp_path / "a.md", None)
    for key in ("first_list_after_change_gzip_ms", "gzip_inflate_ms", "gzip_bytes", "body_bytes"):
        scale["big_list"].pop(key, None)
    scale["big_list"]["first_list_after_change_head_ms"] = [7.5, 8.25]
    page = report_text.render(results, tmp_path / "b.md", None)
    assert "read as nacos-sdk-python reads it: urllib, no gzip" in page
    assert "arrived after [7.5, 8.25] ms" in page
    assert "Accept-Encoding: gzip" not in page
    scale["big_list"].update(first_list_after_change_gzip_ms=[3.5], gzip_inflate_ms=[9.0], gzip_bytes=90_000,
                             body_bytes=3_600_000)
    page = report_text.render(results, tmp_path / "c.md", None)
    assert ("as the Java 1.x client asks, after another change, [3.5] ms to read 90,000 bytes instead of "
            "3,600,000, and then [9.0] ms to inflate them") in page


def test_the_scale_page_gives_the_longest_run_of_steps_between_looks_at_the_sockets(tmp_path: Path) -> None:
    """A run that logged runs of task steps between two looks at the sockets says how many, and the longest."""
    results, scale = _recorded_with_scale()
    scale.pop("loop_stall_log", None)
    assert "between two looks at the sockets" not in report_text.render(results, tmp_path / "a.md", None)
    prefix = "scale-n2: 2026-11-29 02:19:43,187 WARNING n2 distro.stall: stall: "
    scale["loop_stall_log"] = [
        prefix + "the event loop ran 61 ms (30 ms of it on a CPU) between two looks at its sockets: 3 task steps, "
                 "the longest cluster.node.pump.NodeRuntime.run (54 ms)",
        prefix + "the event loop ran 120 ms (90 ms of it on a CPU) between two looks at its sockets: 5 task steps, "
                 "the longest cluster.node.peerlink.PeerLinks._serve_inbound (70 ms)",
    ]
    page = report_text.render(results, tmp_path / "b.md", None)
    assert "Runs of task steps between two looks at the sockets over 50 ms" in page
    assert ("2; the longest: the event loop ran 120 ms (90 ms of it on a CPU) between two looks at its sockets: "
            "5 task steps, the longest cluster.node.peerlink.PeerLinks._serve_inbound (70 ms).") in page


def test_the_scale_page_says_how_many_snapshot_chunks_each_survivor_sent_for_the_restart(tmp_path: Path) -> None:
    """The restart's snapshot is built once, by one survivor: a run that counted the chunks says so."""
    results, scale = _recorded_with_scale()
    scale.pop("restart_chunks_sent", None)
    assert "snapshot chunks the two others sent it" not in report_text.render(results, tmp_path / "a.md", None)
    scale["restart_chunks_sent"] = [0, 410]
    assert "(snapshot chunks the two others sent it: [0, 410])" in report_text.render(results, tmp_path / "b.md", None)
