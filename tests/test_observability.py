"""Request ids and JSON logs on a real server started with ``log_format = "json"`` and ``log_prompts``."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from conftest import DEMO

from gateway.harness import running_server

HEX_ID = re.compile(r"[0-9a-f]{32}")
CHAT = {"model": DEMO, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 3}
# OpenArc's loggers, in the server process and in the engine and preparer processes (which are handed
# the server's logging setup); OpenVINO's own C++ output is not ours to format.
SERVER_LOGGERS = ("openarc", "gateway", "uvicorn", "litestar", "adapters")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    workdir = tmp_path_factory.mktemp("observed")
    config = workdir / "openarc.toml"
    config.write_text(
        f'log_format = "json"\nlog_prompts = true\n[[models]]\nid = "{DEMO}"\nsource = "demo"\n'
    )
    log = workdir / "server.log"
    with running_server(config, log) as root:
        yield root, log


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0], timeout=120) as session:
        yield session


def log_records(log: Path) -> list[dict]:
    """Every JSON record of the server's loggers (lines of other processes are skipped)."""
    records = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return [r for r in records if r["logger"].split(".")[0] in SERVER_LOGGERS]


def records_of(log: Path, request_id: str, expected: int = 1) -> list[dict]:
    """The records carrying ``request_id``, waiting (bounded) for them to be flushed."""
    deadline = time.monotonic() + 10
    while True:
        found = [r for r in log_records(log) if r.get("request_id") == request_id]
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/health", None),
        ("GET", "/v1/models", None),
        ("POST", "/v1/chat/completions", CHAT),
        ("POST", "/v1/chat/completions", {**CHAT, "stream": True}),
        ("POST", "/v1/chat/completions", {**CHAT, "max_tokens": "3"}),  # 400
        ("POST", "/v1/chat/completions", {**CHAT, "model": "no-such-model"}),  # 404 from the handler
        ("GET", "/no/such/route", None),  # 404 from the router: no route middleware runs
        ("DELETE", "/v1/models", None),  # 405
        ("GET", "/metrics", None),
    ],
)
def test_request_id_is_echoed_and_generated_on_every_response(http, method, path, body):
    sent = http.request(method, path, json=body, headers={"X-Request-Id": "client-id-42"})
    assert sent.headers["x-request-id"] == "client-id-42"
    generated = http.request(method, path, json=body)
    assert HEX_ID.fullmatch(generated.headers["x-request-id"])
    again = http.request(method, path, json=body)
    assert again.headers["x-request-id"] != generated.headers["x-request-id"]


@pytest.mark.parametrize("bad", ["x" * 129, "has space", "tab\there", "ünïcode", ""])
def test_insane_request_ids_are_replaced(http, bad):
    response = http.get("/health", headers={"X-Request-Id": bad.encode("utf-8")})
    assert HEX_ID.fullmatch(response.headers["x-request-id"])


def test_longest_sane_request_id_is_kept(http):
    rid = "A~!" * 42 + "zz"  # 128 printable characters
    assert http.get("/health", headers={"X-Request-Id": rid}).headers["x-request-id"] == rid


def test_sdk_sees_the_request_id_on_streams(server):
    client = openai.OpenAI(base_url=f"{server[0]}/v1", api_key="unused", max_retries=0, timeout=120)
    with client.chat.completions.with_streaming_response.create(
        model=DEMO,
        messages=CHAT["messages"],
        max_tokens=3,
        stream=True,
        extra_headers={"X-Request-Id": "stream-id-7"},
    ) as response:
        assert response.headers["x-request-id"] == "stream-id-7"
        chunks = [c for c in response.parse() if c.choices]
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_log_lines_are_json_objects(http, server):
    http.get("/health")
    records = log_records(server[1])
    assert records, "the server logged JSON lines"
    for record in records:
        assert {"timestamp", "level", "logger", "message"} <= record.keys()
        assert record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    assert any(r["logger"] == "uvicorn.access" for r in records)
    assert any(r["logger"] == "openarc" and r["message"].startswith("serving ") for r in records)
    assert any(r["logger"] == "adapters.openvino.worker.pipeline" for r in records), (
        "engine processes log JSON too"
    )
    server_lines = [
        line
        for line in server[1].read_text().splitlines()
        if line.startswith("{") or re.match(r"\S+ \S+ [A-Z]+ (openarc|gateway|uvicorn|adapters)", line)
    ]
    assert all(line.startswith("{") for line in server_lines), "no text lines from the server's loggers"


def test_every_line_about_a_request_carries_its_id(http, server):
    marker = "periwinkle-lantern-5521"
    request = {**CHAT, "messages": [{"role": "user", "content": f"Repeat: {marker}"}], "stream": True}
    with http.stream(
        "POST", "/v1/chat/completions", json=request, headers={"X-Request-Id": "trace-me-1"}
    ) as r:
        assert r.status_code == 200
        body = "".join(r.iter_text())
    assert body.endswith("data: [DONE]\n\n")
    records = records_of(server[1], "trace-me-1", expected=3)
    loggers = [r["logger"] for r in records]
    assert "uvicorn.access" in loggers
    prompts = [r["message"] for r in records if r["logger"] == "openarc.prompts"]
    assert any(marker in message for message in prompts), "log_prompts logs the messages"
    assert any(message.startswith("answer 0: ") for message in prompts), "and the generated text"
    assert all(r["level"] == "DEBUG" for r in records if r["logger"] == "openarc.prompts")


def test_errors_are_logged_with_their_request_id(http, server):
    response = http.get("/no/such/route", headers={"X-Request-Id": "lost-1"})
    assert response.status_code == 404
    access = [r for r in records_of(server[1], "lost-1") if r["logger"] == "uvicorn.access"]
    assert access and "404" in access[0]["message"]


def test_start_up_lines_name_the_inference_precision(server):
    """The engine's load line and the server's ready line say what the model computes in (issue 18)."""
    messages = [r["message"] for r in log_records(server[1])]
    assert any(f"model {DEMO} ready on CPU at inference precision f32" in m for m in messages), messages
    assert any(m.startswith(f"loaded {DEMO} (") and "at inference precision f32" in m for m in messages)
