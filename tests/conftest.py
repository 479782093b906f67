"""Shared fixtures: one real OpenArc server on a free loopback port, serving the demo model.

Set ``OPENARC_TEST_BASE_URL`` (for example ``http://127.0.0.1:8000/v1``) to run the suite against a
server you started yourself; it must serve the models in ``SERVER_CONFIG``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import openai
import pytest

from gateway.harness import running_server

DEMO = "SmolLM2-135M-Instruct"
SMALL_QUEUE = "smollm2-small-queue"
"""The demo model again, with room for one running and one waiting request, to test admission control."""
SEQUENTIAL = "smollm2-sequential"
"""The demo model on the one-at-a-time engine that NPU gets, with one waiting request allowed, greedy by
default (its ``sampling`` setting), computing exactly (``EXACT_PROPERTIES``)."""
EXACT = "smollm2-exact"
"""The demo model computing exactly: f32 activations with no dynamic quantization, so its greedy answers
do not depend on what else is in the batch or how many tokens a step checks (tests that compare answers
use it; the demo model's defaults trade that for speed, see README "Inference precision")."""
EXACT_PROPERTIES = "{ DYNAMIC_QUANTIZATION_GROUP_SIZE = 0 }"

SUPERVISED = "smollm2-supervised"
"""The demo model in an engine of its own that tests kill and stop, with a short stall timeout."""
SUPERVISED_STALL_TIMEOUT = 5

ADMIN_KEY = "test-admin-key"

LISTED_ALIAS = "gpt-4o-mini"
"""An alias of the demo model that ``/v1/models`` lists; ``claude-*`` is another, a pattern, unlisted."""

SERVER_CONFIG = f"""
admin_key = "{ADMIN_KEY}"
models_dirs = []  # the models it is given, nothing from the cache (tests/test_on_demand.py covers those)

[[aliases]]
name = "{LISTED_ALIAS}"
model = "{DEMO}"
listed = true

[[aliases]]
name = "claude-*"
model = "{DEMO}"

[[models]]
id = "{DEMO}"
source = "demo"

[[models]]
id = "{SMALL_QUEUE}"
source = "demo"
max_queue = 1
scheduler = {{ max_num_seqs = 1, cache_size = 1 }}

[[models]]
id = "{SEQUENTIAL}"
source = "demo"
engine = "sequential"
max_queue = 1
sampling = {{ temperature = 0.0 }}
inference_precision = "f32"
properties = {EXACT_PROPERTIES}

[[models]]
id = "{EXACT}"
source = "demo"
inference_precision = "f32"
properties = {EXACT_PROPERTIES}

[[models]]
id = "{SUPERVISED}"
source = "demo"
stall_timeout = {SUPERVISED_STALL_TIMEOUT}
scheduler = {{ max_num_seqs = 4, cache_size = 1 }}
"""


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
    with running_server(config, workdir / "server.log") as root:
        yield f"{root}/v1"


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
