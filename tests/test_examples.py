"""The examples that show what OpenArc is for, run as scripts against the test server with short settings.

Each runs as a user would run it (a subprocess with ``OPENARC_*`` settings), and its output is checked
for what the example is there to show, not only for a zero exit code.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest
from conftest import ADMIN_KEY, DEMO
from encoder_models import minilm_export

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
EMBEDDER = "minilm-examples"
"""Its own id, so this module's load and unload never meet test_embeddings.py's ``minilm``."""


def run(script: str, base_url: str, **settings: str) -> list[str]:
    """Runs ``examples/<script>`` with OPENARC_* settings; returns its non-empty stdout lines."""
    env = {**os.environ, "OPENARC_BASE_URL": base_url, "OPENARC_MODEL": DEMO}
    env.update({f"OPENARC_{key.upper()}": value for key, value in settings.items()})
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def embedder(http: httpx.Client) -> Iterator[str]:
    """MiniLM loaded into the test server through the admin API for this module."""
    response = http.post("/admin/models", headers=AUTH, json={"id": EMBEDDER, "source": str(minilm_export())})
    assert response.status_code == 200, response.text
    yield EMBEDDER
    http.delete(f"/admin/models/{EMBEDDER}", headers=AUTH)


def test_fanout(base_url: str):
    lines = run("fanout.py", base_url, example_count="6", example_concurrency="3", example_max_tokens="16")
    assert lines[0].startswith("requests: 6, 3 at a time"), lines
    rate = re.fullmatch(r"output: (\d+) tokens, ([\d.]+) tokens/s aggregate", lines[1])
    assert rate and 6 <= int(rate[1]) <= 6 * 16 and float(rate[2]) > 0, lines
    for line, name in zip(lines[2:], ["latency", "TTFT"], strict=True):
        p50, p95 = map(float, re.fullmatch(rf"{name}: p50 ([\d.]+) s, p95 ([\d.]+) s", line).groups())
        assert 0 < p50 <= p95, line


def test_round_robin_history_is_cached(base_url: str):
    lines = run("round_robin.py", base_url, example_turns="4", example_max_tokens="24")
    turns = [
        re.fullmatch(r"turn (\d) (\w+): TTFT (?:\d+ ms|no text), prompt (\d+) tokens, (\d+) cached", line)
        for line in lines
        if line.startswith("turn ")
    ]
    assert all(turns) and len(turns) == 4, lines
    assert [t[2] for t in turns] == ["planner", "critic", "writer", "planner"]
    prompts = [int(t[3]) for t in turns]
    cached = [int(t[4]) for t in turns]
    assert prompts == sorted(prompts), "each turn resends a longer history"
    for turn in range(1, 4):
        # All of the previous turn's prompt but its last, partial 32-token block comes from the cache.
        assert cached[turn] >= prompts[turn - 1] - 32, (prompts, cached)


def test_synthetic_data_writes_valid_jsonl(base_url: str, tmp_path: Path):
    output = tmp_path / "reviews.jsonl"
    lines = run("synthetic_data.py", base_url, example_count="4", output=str(output))
    assert lines[0] == f"wrote 4 records (validated with jsonschema, 0 rejected) to {output}", lines
    spec = importlib.util.spec_from_file_location("synthetic_data", EXAMPLES / "synthetic_data.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)  # defines the schema; the run itself is behind __main__
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(records) == 4
    for record in records:
        jsonschema.validate(record, example.REVIEW)


def test_langchain_agent_calls_the_tool(base_url: str):
    lines = run("langchain_agent.py", base_url)
    assert re.fullmatch(r"call: get_weather\(\{'city': '.+', 'unit': '(celsius|fahrenheit)'\}\)", lines[0]), (
        lines
    )
    assert lines[1].startswith("result: 18 degrees"), lines
    assert lines[-1].startswith("answer:") and lines[-1] != "answer:", lines


def test_llamaindex_rag(base_url: str, embedder: str):
    lines = run("llamaindex_rag.py", base_url, embedding_model=embedder)
    retrieved = next(line for line in lines if line.startswith("retrieved:"))
    assert "fire assembly point" in retrieved  # MiniLM finds the one relevant note
    assert any(line.startswith("answer:") for line in lines), lines
