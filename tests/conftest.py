"""Shared fixtures: one real OpenArc server on a free loopback port, serving the demo model.

Set ``OPENARC_TEST_BASE_URL`` (for example ``http://127.0.0.1:8000/v1``) to run the suite against a
server you started yourself; it must serve the models in ``SERVER_CONFIG``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = "SmolLM2-135M-Instruct"
SMALL_QUEUE = "smollm2-small-queue"
"""The demo model again, with room for one running and one waiting request, to test admission control."""
SMALL_QUEUE_TIMEOUT = 6
SEQUENTIAL = "smollm2-sequential"
"""The demo model on the one-at-a-time engine that NPU gets, with one waiting request allowed."""

ADMIN_KEY = "test-admin-key"

SERVER_CONFIG = f"""
admin_key = "{ADMIN_KEY}"

[[models]]
id = "{DEMO}"
source = "demo"

[[models]]
id = "{SMALL_QUEUE}"
source = "demo"
max_queue = 1
request_timeout = {SMALL_QUEUE_TIMEOUT}
scheduler = {{ max_num_seqs = 1, cache_size = 1 }}

[[models]]
id = "{SEQUENTIAL}"
source = "demo"
engine = "sequential"
max_queue = 1
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"openarc exited with {process.returncode} during start-up:\n{log.read_text()[-4000:]}"
            )
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    pytest.fail(f"openarc did not become healthy in {timeout} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (ending in /v1) of a real OpenArc server serving the demo model."""
    external = os.environ.get("OPENARC_TEST_BASE_URL")
    if external:
        yield external.rstrip("/")
        return
    workdir = tmp_path_factory.mktemp("server")
    config = workdir / "openarc.toml"
    config.write_text(SERVER_CONFIG)
    log = workdir / "server.log"
    port = free_port()
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port", str(port)]
    with log.open("w") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/health", process, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def server_root(base_url: str) -> str:
    """The server's root URL, without /v1."""
    return base_url.removesuffix("/v1")


@pytest.fixture(scope="session")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture
async def aclient(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def http(server_root: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server_root, timeout=120) as session:
        yield session


@pytest.fixture(scope="session")
def activity(http: httpx.Client):
    """A function returning a model's entry in /health: its in_flight and running request counts."""

    def read(model: str) -> dict:
        return next(m for m in http.get("/health").json()["models"] if m["id"] == model)

    return read
