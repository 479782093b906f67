"""The benchmarks run end to end with tiny settings (what they measure is not checked: no timed tests)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import DEMO
from helpers import ROOT


def bench(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_bench_against_a_peer_reports_ratios_and_memory(server_root):
    # The test session's own server stands in for the peer: any OpenAI-compatible server will do.
    report = bench(
        "bench", "--levels", "1,2", "--repeats", "1", "--turns", "2", "--conversations", "2",
        "--max-tokens", "8", "--turn-tokens", "8", "--peer", server_root, "--peer-model", DEMO,
    )  # fmt: skip
    assert f"## Against the peer: `{DEMO}`" in report
    assert "| 2 |" in report.split("## Against the peer")[1]
    assert "OpenArc/peer" in report
    memory = report.split("## Resident memory after the workloads")[1]
    assert "| server |" in memory and "| engine |" in memory and "| preparer |" in memory


def test_speculative_bench_prints_every_workload():
    table = bench("bench.speculative", "--repeats", "1", "--max-tokens", "12")
    for workload in ("edit a text", "extraction", "RAG answer", "open story"):
        assert f"| {workload} |" in table


def test_startup_bench_times_starts_with_and_without_warm_up():
    """Each start serves a round robin, so a model loaded with ``warm_up = false`` is shown to serve."""
    table = bench(
        "bench.startup", "--starts", "1", "--conversations", "1", "--turns", "2", "--turn-tokens", "4"
    )
    assert "| 1 | on |" in table and "| 1 | off |" in table


def test_swap_bench_times_loads_and_swaps_under_a_cap_of_one():
    """Two models in turns under max_loaded_models = 1 load at every turn (2 turns: 2 loads), and not at
    all without the cap; every first-token row was a request for an unloaded model (the bench checks)."""
    table = bench(
        "bench.swap", "--repeats", "1", "--turns", "2", "--turn-tokens", "4", "--fill-requests", "2"
    )
    assert "| demo | cold, fresh cache_dir |" in table and "| demo | warm |" in table
    cells = [
        [cell.strip() for cell in line.split("|")] for line in table.splitlines() if line.startswith("|")
    ]
    rows = {row[1]: row[5] for row in cells if len(row) == 7}  # the turns table: 5 columns
    assert rows["no cap"] == "0" and rows["1"] == "2", table
    memory = next(
        line for line in table.split("estimate against")[1].splitlines() if line.startswith("| demo |")
    )
    estimate, idle, after = (float(cell.replace(",", "")) for cell in memory.split("|")[2:5])
    assert estimate > after > 0 and estimate > idle > 0, "the budget's estimate is the worst case"


@pytest.mark.parametrize("mode", [[], ["--interleaved"]], ids=["http", "interleaved"])
def test_settings_bench_compares_a_variant_with_the_default(mode):
    variant = ["--only", "KV_CACHE_PRECISION=u8"]
    prefill = ["--prefill", "300"] if mode else []
    table = bench(
        "bench.settings", *variant, *mode, *prefill, "--levels", "1", "--repeats", "2", "--max-tokens", "8"
    )
    assert "| default | " in table and "| KV_CACHE_PRECISION=u8 | " in table
    assert ("in-process, interleaved" in table) == bool(mode)
    assert ("| prefill of 300 tok/s |" in table) == bool(mode) and "flags: " in table


def test_contention_bench_runs_alone_and_beside_a_burner():
    table = bench("bench.contention", "--concurrency", "2", "--max-tokens", "8", "--rounds", "1")
    assert "| pinned |" in table and "| not pinned |" in table


def test_batch_invariance_bench_finds_none_when_computing_exactly():
    """What README "Inference precision" promises, measured on the raw pipeline: f32 without dynamic
    quantization gives every prompt the same greedy answer alone and batched, and prompt lookup the plain
    answer. The other rows depend on the CPU (see docs/benchmarks.md) and are only shown."""
    table = bench("bench.batch_invariance", "--max-tokens", "12")
    assert "| f32, DYNAMIC_QUANTIZATION_GROUP_SIZE=0 | 0 of 8 | - | - |" in table, table
    assert "| f32 (auto) | " in table and "| bf16 | " in table


def test_precision_quality_bench_compares_with_exact_f32():
    from encoder_models import CACHE_ROOT

    from gateway.sources import ensure_demo_model

    gguf = ensure_demo_model(CACHE_ROOT)
    table = bench(
        "bench.precision_quality",
        str(gguf),
        "--tokens",
        "300",
        "--pieces",
        "128",
        "--configurations",
        "f32,bf16",
    )
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith(f"| {gguf.name}")]
    assert [row[2] for row in rows] == ["f32", "bf16"] and rows[0][3] == "f32"
    assert all(0 <= float(row[4]) < 0.05 for row in rows), table
