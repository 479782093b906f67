"""The benchmark report: one Markdown page with the tables and the ratios measured in the same run."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path

from adapters.export.timing import LevelResult, RequestTiming, percentile
from adapters.openvino.devices import cpu_summary, effective_precision
from adapters.openvino.spec import precision_hint

from .http_load import summarize_pings

MS = 1000


@dataclass
class BenchRun:
    """Everything one benchmark run measured."""

    model: Path
    device: str
    max_tokens: int
    turn_tokens: int
    conversations: int
    http: dict[int, LevelResult]
    pings: dict[int, list[float]]
    idle_pings: list[float]
    turns: list[list[RequestTiming]]
    repeated: list[RequestTiming]
    raw: dict[int, LevelResult] = field(default_factory=dict)
    peer: PeerRun | None = None
    memory: list[tuple[str, int, float]] = field(default_factory=list)
    """(role, pid, resident MB) of the server's processes after the workloads."""
    cpu: dict[int, dict[str, float]] = field(default_factory=dict)
    """Per concurrency level: CPU cores used on average, by role (client, server, engine, ...)."""


@dataclass
class PeerRun:
    """The same HTTP workloads against another OpenAI-compatible server, in the same run."""

    url: str
    model: str
    http: dict[int, LevelResult]
    turns: list[list[RequestTiming]]
    memory: list[tuple[str, int, float]] = field(default_factory=list)


def ratio(a: float, b: float) -> str:
    """``a / b`` as ``1.23x``; ``n/a`` when ``b`` is zero or NaN."""
    return f"{a / b:.2f}x" if b and b == b else "n/a"


def render(run: BenchRun) -> str:
    """The whole report as Markdown."""
    sections = _header(run) + _sweep(run) + _ratios(run) + _cpu(run) + _memory(run) + _peer(run)
    sections += _multi_turn(run)
    return "\n".join(sections) + "\n"


def _header(run: BenchRun) -> list[str]:
    return [
        "# OpenArc benchmark",
        "",
        f"- command: `{' '.join(['python -m bench', *sys.argv[1:]])}`",
        f"- model: `{run.model.name}` on {run.device}; {run.max_tokens} tokens a request, greedy, ignore_eos;"
        " each level is run several times and the run with the median throughput is shown",
        f"- machine: {platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"Python {platform.python_version()}; CPU {cpu_summary()}",
        f"- inference precision: {_precision(run.device)} (OpenArc's auto, as the server and the raw "
        "pipeline load the model)",
        "- HTTP: a real `openarc serve` on 127.0.0.1, streaming API, client in another process;"
        " raw: ContinuousBatchingPipeline in-process, same file, device and scheduler settings",
        "",
    ]


def _precision(device: str) -> str:
    return effective_precision(device, precision_hint(device)) or "chosen by the device"


def _sweep(run: BenchRun) -> list[str]:
    lines = [
        "## Concurrency sweep",
        "",
        "| C | HTTP tok/s | raw tok/s | HTTP/raw | req/s | TTFT p50 ms | TTFT p95 ms"
        " | ITL p50 ms | ITL p95 ms | /health p95 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c, level in run.http.items():
        raw = run.raw.get(c)
        raw_columns = (
            f"{raw.tokens_per_second:.1f} | {ratio(level.tokens_per_second, raw.tokens_per_second)}"
            if raw
            else "- | -"
        )
        lines.append(
            f"| {c} | {level.tokens_per_second:.1f} | {raw_columns}"
            f" | {level.requests_per_second:.2f} | {level.ttft(50) * MS:.0f} | {level.ttft(95) * MS:.0f}"
            f" | {level.itl(50) * MS:.1f} | {level.itl(95) * MS:.1f}"
            f" | {percentile(run.pings[c], 95) * MS:.1f} |"
        )
    return [*lines, ""]


def _ratios(run: BenchRun) -> list[str]:
    first = min(run.http)
    busy = 8 if 8 in run.http else max(run.http)
    http_first, http_busy = run.http[first], run.http[busy]
    lines = [
        "## Ratios measured in this run",
        "",
        f"- HTTP aggregate tok/s, C={busy} vs C={first}: "
        f"{ratio(http_busy.tokens_per_second, http_first.tokens_per_second)}",
    ]
    if run.raw:
        raw_first, raw_busy = run.raw[first], run.raw[busy]
        lines += [
            f"- raw pipeline aggregate tok/s, C={busy} vs C={first}: "
            f"{ratio(raw_busy.tokens_per_second, raw_first.tokens_per_second)}",
            f"- HTTP vs raw, aggregate tok/s at C={busy}: "
            f"{ratio(http_busy.tokens_per_second, raw_busy.tokens_per_second)}",
            f"- single-stream decode (tokens after the first), HTTP vs raw at C={first}: "
            f"{http_first.decode_rate:.1f} vs {raw_first.decode_rate:.1f} tok/s = "
            f"{ratio(http_first.decode_rate, raw_first.decode_rate)}",
        ]
    lines += [
        f"- /health latency idle: {summarize_pings(run.idle_pings)}",
        f"- /health latency during C={busy}: {summarize_pings(run.pings[busy])}",
        "",
    ]
    return lines


def _cpu(run: BenchRun) -> list[str]:
    if not run.cpu:
        return []
    roles = [
        r
        for r in ("engine", "server", "preparer", "resource tracker", "client")
        if r in run.cpu[min(run.cpu)]
    ]
    lines = [
        "## Where the CPU goes (cores in use, averaged over each level's runs)",
        "",
        f"{os.cpu_count()} logical CPUs; the engine's inference threads want all of them, so every other"
        " process's share is time the engine may lose.",
        "",
        "| C | " + " | ".join(roles) + " |",
        "|---|" + "---|" * len(roles),
    ]
    for c, used in run.cpu.items():
        lines.append(f"| {c} | " + " | ".join(f"{used.get(r, 0):.2f}" for r in roles) + " |")
    return [*lines, ""]


def _memory(run: BenchRun) -> list[str]:
    rows = run.memory + (run.peer.memory if run.peer else [])
    if not rows:
        return []
    lines = ["## Resident memory after the workloads", "", "| process | pid | MB |", "|---|---|---|"]
    lines += [f"| {role} | {pid} | {mb:.0f} |" for role, pid, mb in rows]
    ours = sum(mb for _, _, mb in run.memory)
    lines += ["", f"- OpenArc in all: {ours:.0f} MB"]
    if run.peer and run.peer.memory:
        theirs = sum(mb for _, _, mb in run.peer.memory)
        lines[-1] += f"; the peer: {theirs:.0f} MB ({ratio(ours, theirs)})"
    return [*lines, ""]


def _peer(run: BenchRun) -> list[str]:
    peer = run.peer
    if peer is None:
        return []
    lines = [
        f"## Against the peer: `{peer.model}` at {peer.url}",
        "",
        "The same workloads, sent the same way, to the other server after OpenArc's turn.",
        "",
        "| C | OpenArc tok/s | peer tok/s | OpenArc/peer | OpenArc TTFT p50 ms | peer TTFT p50 ms"
        " | OpenArc ITL p50 ms | peer ITL p50 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c, ours in run.http.items():
        theirs = peer.http.get(c)
        if theirs is None:
            continue
        lines.append(
            f"| {c} | {ours.tokens_per_second:.1f} | {theirs.tokens_per_second:.1f}"
            f" | {ratio(ours.tokens_per_second, theirs.tokens_per_second)}"
            f" | {ours.ttft(50) * MS:.0f} | {theirs.ttft(50) * MS:.0f}"
            f" | {ours.itl(50) * MS:.1f} | {theirs.itl(50) * MS:.1f} |"
        )
    first = min(run.http)
    if first in peer.http:
        lines += [
            "",
            f"- single-stream decode, OpenArc vs peer at C={first}: {run.http[first].decode_rate:.1f} vs "
            f"{peer.http[first].decode_rate:.1f} tok/s = "
            f"{ratio(run.http[first].decode_rate, peer.http[first].decode_rate)}",
        ]
    lines += [
        "",
        "| turn | OpenArc TTFT p50 ms | peer TTFT p50 ms | OpenArc/peer |",
        "|---|---|---|---|",
    ]
    for number, (ours, theirs) in enumerate(zip(run.turns, peer.turns, strict=False), 1):
        mine, other = (percentile([t.ttft for t in timings], 50) for timings in (ours, theirs))
        lines.append(f"| {number} | {mine * MS:.0f} | {other * MS:.0f} | {ratio(mine, other)} |")
    return [*lines, ""]


def _multi_turn(run: BenchRun) -> list[str]:
    lines = [
        f"## Multi-turn round robin ({run.conversations} conversations, {run.turn_tokens}-token replies)",
        "",
        "Each turn resends the whole history plus a new user message; conversations take turns.",
        "",
        "| turn | prompt tokens (median) | cached tokens (median) | TTFT p50 ms | TTFT max ms |",
        "|---|---|---|---|---|",
    ]
    for number, timings in enumerate(run.turns, 1):
        prompt = percentile([t.prompt_tokens for t in timings], 50)
        cached = percentile([t.cached_tokens for t in timings], 50)
        ttft = percentile([t.ttft for t in timings], 50)
        worst = max(t.ttft for t in timings)
        lines.append(f"| {number} | {prompt:.0f} | {cached:.0f} | {ttft * MS:.0f} | {worst * MS:.0f} |")
    first = percentile([t.ttft for t in run.turns[0]], 50)
    last = percentile([t.ttft for t in run.turns[-1]], 50)
    lines += ["", f"- TTFT turn {len(run.turns)} vs turn 1: {ratio(last, first)}", ""]
    lines += [
        "## One long prompt sent again",
        "",
        "| send | prompt tokens | cached tokens | TTFT ms |",
        "|---|---|---|---|",
    ]
    for number, timing in enumerate(run.repeated, 1):
        lines.append(
            f"| {number} | {timing.prompt_tokens} | {timing.cached_tokens} | {timing.ttft * MS:.0f} |"
        )
    return lines
