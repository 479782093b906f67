"""The benchmarks run end to end with tiny settings (what they measure is not checked: no timed tests)."""

from __future__ import annotations

import subprocess
import sys

from conftest import DEMO

from bench.server import ROOT


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


def test_startup_bench_times_every_start():
    table = bench(
        "bench.startup", "--starts", "2", "--conversations", "1", "--turns", "2", "--turn-tokens", "4"
    )
    assert "| 1 |" in table and "| 2 |" in table


def test_settings_bench_compares_a_variant_with_the_default():
    variant = ["--only", "KV_CACHE_PRECISION=f16"]
    table = bench("bench.settings", *variant, "--levels", "1", "--repeats", "1", "--max-tokens", "8")
    assert "| default | " in table and "| KV_CACHE_PRECISION=f16 | " in table
