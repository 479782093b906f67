"""One supervisor for every child process a model runs (issue 20): kill any of them (a chat model's engine,
its prompt preparer, an encoder) and the request it held ends at once with a 503 that says why and when
to retry; then the registry brings the model back and it serves again. Against the real server.

The engine killed during a stream, and stopped, is tests/test_resilience.py; the encoder killed while
idle is tests/test_embeddings.py. Each test here loads a model of its own, so its restart count and
backoff are its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
from conftest import ADMIN_KEY, DEMO
from encoder_models import minilm_export
from helpers import wait_for

from adapters.base import RESTART_RETRY_AFTER
from gateway.config import ServerConfig
from gateway.harness import parse, value
from gateway.registry import RESTART_BACKOFF

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
LONG = {"max_tokens": 3000, "ignore_eos": True, "temperature": 0}
HELLO = [{"role": "user", "content": "Hello."}]

CHAT_REASONS = {
    "engine": "the engine process exited (exit code -9)",
    "preparer": "the engine's prompt preparer process exited",
}
"""What the cut-off request is told when each child of a chat model is killed."""


def admin_entry(http: httpx.Client, model: str) -> dict:
    return next(m for m in http.get("/admin/models", headers=AUTH).json()["data"] if m["id"] == model)


def load(http: httpx.Client, model: str, source: str) -> None:
    response = http.post("/admin/models", headers=AUTH, json={"id": model, "source": source})
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "ready", response.text


@pytest.fixture
def chat_children(http: httpx.Client) -> Iterator[tuple[str, dict[str, int]]]:
    """A demo model of the test's own: its id, and the pids of its engine and its prompt preparer.

    The preparer's pid is not reported anywhere, so it is found as the one other process the server
    started while the model loaded.
    """
    model = "supervised-chat"
    server = psutil.Process(admin_entry(http, DEMO)["engine_pid"]).parent()
    before = {child.pid for child in server.children()}
    load(http, model, "demo")
    started = {child.pid for child in server.children()} - before
    engine = admin_entry(http, model)["engine_pid"]
    assert engine in started and len(started) == 2, started
    (preparer,) = started - {engine}
    yield model, {"engine": engine, "preparer": preparer}
    http.delete(f"/admin/models/{model}", headers=AUTH)


@pytest.fixture
def encoder_model(http: httpx.Client) -> Iterator[str]:
    """An embedding model of the test's own."""
    model = "supervised-encoder"
    load(http, model, str(minilm_export(ServerConfig().cache_path)))
    yield model
    http.delete(f"/admin/models/{model}", headers=AUTH)


def cut_off(url: str, body: dict, kill: int, http: httpx.Client, model: str) -> httpx.Response:
    """Send ``body`` to ``url``; once the model runs it, SIGKILL ``kill``; the response the request got."""
    answers: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: answers.append(httpx.post(url, json=body, timeout=120)))
    worker.start()
    wait_for(lambda: admin_entry(http, model)["running"] > 0, timeout=60, what="the request to run")
    os.kill(kill, signal.SIGKILL)
    worker.join(timeout=60)
    assert not worker.is_alive(), "the request hung after its process was killed"
    return answers[0]


def assert_cut_off(response: httpx.Response, reason: str) -> None:
    """A 503 naming the failure, telling the client when to retry."""
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "service_unavailable", error
    assert error["message"] == f"The model stopped serving this request: {reason}", error
    assert response.headers["retry-after"] == str(RESTART_RETRY_AFTER)


def wait_until_back(http: httpx.Client, model: str, old_pid: int) -> None:
    """The registry restarts the model: ready again, on a new process."""

    def back() -> bool:
        entry = admin_entry(http, model)
        assert entry["state"] != "failed", entry
        return entry["state"] == "ready" and entry["engine_pid"] != old_pid

    wait_for(back, timeout=180, what=f"{model} to restart")
    assert admin_entry(http, model)["restarts"] >= 1


@pytest.mark.parametrize("child", ["engine", "preparer"])
def test_killed_chat_child_cuts_its_request_off_and_the_model_comes_back(
    http, server_root, chat_children, child
):
    model, pids = chat_children
    body = {"model": model, "messages": [{"role": "user", "content": "Count."}], **LONG}
    response = cut_off(f"{server_root}/v1/chat/completions", body, pids[child], http, model)
    assert_cut_off(response, CHAT_REASONS[child])
    wait_until_back(http, model, pids["engine"])
    again = http.post("/v1/chat/completions", json={**body, "max_tokens": 5})
    assert again.status_code == 200, again.text
    assert again.json()["choices"][0]["message"]["content"]


def test_killed_encoder_cuts_its_request_off_and_the_model_comes_back(http, server_root, encoder_model):
    pid = admin_entry(http, encoder_model)["engine_pid"]
    os.kill(pid, signal.SIGSTOP)  # hold the batch in the encoder, so the kill cuts a request off
    body = {"model": encoder_model, "input": "cut off"}
    try:
        response = cut_off(f"{server_root}/v1/embeddings", body, pid, http, encoder_model)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # never left stopped: the encoder has no watchdog to notice it
        raise
    assert_cut_off(response, "the encoder process exited (exit code -9)")
    wait_until_back(http, encoder_model, pid)
    again = http.post("/v1/embeddings", json={"model": encoder_model, "input": "back?"})
    assert again.status_code == 200, again.text
    assert len(again.json()["data"][0]["embedding"]) == 384


def test_restart_backoff_then_failed_after_max_restarts(http):
    """The registry's one restart policy, for every kind of child: the first restart waits a second
    (backoff), requests meanwhile get 503 model_not_ready with Retry-After, the metrics count the restart
    and the state; a second failure within a minute is one more than max_restarts = 1, so the model is
    failed, says why, and can be removed. /ready ignores it throughout: it was loaded at run time."""
    model = "fragile"
    response = http.post(
        "/admin/models", headers=AUTH, json={"id": model, "source": "demo", "max_restarts": 1}
    )
    assert response.status_code == 200, response.text
    try:
        first_pid = admin_entry(http, model)["engine_pid"]
        killed_at = time.monotonic()
        os.kill(first_pid, signal.SIGKILL)
        wait_for(lambda: admin_entry(http, model)["state"] == "restarting", timeout=30, what="restarting")
        waiting = http.post("/v1/chat/completions", json={"model": model, "messages": HELLO, "max_tokens": 2})
        assert waiting.status_code == 503, waiting.text
        assert waiting.json()["error"]["code"] == "model_not_ready"
        assert "restarting after an engine failure" in waiting.json()["error"]["message"]
        assert waiting.headers["retry-after"] == "5"
        assert http.get("/ready").status_code == 200
        wait_until_back(http, model, first_pid)
        assert time.monotonic() - killed_at >= RESTART_BACKOFF[0]
        samples = parse(http.get("/metrics").text)
        assert value(samples, "openarc_engine_restarts_total", model=model) == 1
        assert value(samples, "openarc_model_state", model=model, state="ready") == 1
        assert value(samples, "openarc_model_state", model=model, state="restarting") == 0

        os.kill(admin_entry(http, model)["engine_pid"], signal.SIGKILL)
        wait_for(lambda: admin_entry(http, model)["state"] == "failed", timeout=60, what="failed")
        entry = admin_entry(http, model)
        assert entry["restarts"] == 1 and "failed 2 times in a row" in entry["error"], entry
        refused = http.post("/v1/chat/completions", json={"model": model, "messages": HELLO, "max_tokens": 2})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_not_ready"
        assert "failed 2 times in a row" in refused.json()["error"]["message"]
        samples = parse(http.get("/metrics").text)
        assert value(samples, "openarc_model_state", model=model, state="failed") == 1
        assert http.get("/ready").status_code == 200
    finally:
        removed = http.delete(f"/admin/models/{model}", headers=AUTH)
    assert removed.status_code == 200, removed.text
