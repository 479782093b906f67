"""Many models on one machine (issue 22): every model in the model folders listed, loaded on first use,
unloaded when idle, and kept within a memory budget. Real servers, real models: the demo GGUF, an int4
export of it and the MiniLM embedding export.

Each server here is its own (its models' states are what the tests look at). Waits are bounded polls:
nothing here asserts on speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from encoder_models import minilm_export
from helpers import wait_for
from test_export import demo_gguf, exports, short_text  # noqa: F401 - fixtures: the int4 export

from gateway.config import ServerConfig, parse_duration, parse_memory
from gateway.harness import parse, running_server, value
from gateway.sources import demo_model_path

CHAT = [{"role": "user", "content": "Say hello."}]
LONG_STREAM = {
    "max_tokens": 1000,
    "ignore_eos": True,
    "temperature": 0,
    "stream": True,
    "stream_options": {"include_usage": True},
}
"""A stream of seconds on the demo model (1,000 tokens: about 10 s at 100 tok/s), longer than the
keep_alive and the waits here."""


def models(http: httpx.Client) -> dict[str, dict]:
    return {m["id"]: m for m in http.get("/v1/models").json()["data"]}


def admin(http: httpx.Client) -> dict[str, dict]:
    return {m["id"]: m for m in http.get("/admin/models").json()["data"]}


def chat(http: httpx.Client, model: str, **extra) -> httpx.Response:
    return http.post(
        "/v1/chat/completions", json={"model": model, "messages": CHAT, "max_tokens": 8, **extra}
    )


def embed(http: httpx.Client, model: str) -> httpx.Response:
    return http.post("/v1/embeddings", json={"model": model, "input": "hello"})


def server_children(root: str) -> list[psutil.Process]:
    """The live processes a server started for its models (its multiprocessing resource tracker aside)."""
    port = root.rsplit(":", 1)[1]
    server = next(
        process
        for process in psutil.process_iter(["cmdline"])
        if "gateway.cli" in (command := process.info["cmdline"] or []) and ["--port", port] == command[-2:]
    )
    children = []
    for child in server.children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(child.cmdline()):
                children.append(child)
    return children


def stream_usage(http: httpx.Client, model: str, max_tokens: int) -> tuple[int, str | None]:
    """Stream a long answer; its completion tokens (from the usage chunk) and finish reason."""
    body = {"model": model, "messages": CHAT, **LONG_STREAM, "max_tokens": max_tokens}
    tokens, finish = 0, None
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[len("data: ") :])
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                if chunk["choices"] and chunk["choices"][0]["finish_reason"]:
                    finish = chunk["choices"][0]["finish_reason"]
    return tokens, finish


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, exports) -> Path:  # noqa: F811 - the fixture imported above
    """The int4 export and the MiniLM export side by side, a corrupt export, an empty GGUF, and things
    that are not models at all."""
    folder = tmp_path_factory.mktemp("models")
    (folder / "smollm2-int4").symlink_to(exports["int4"])
    (folder / "minilm").symlink_to(minilm_export())
    broken = folder / "broken-ir"
    shutil.copytree(exports["int4"], broken)
    xml = (broken / "openvino_model.xml").read_bytes()
    (broken / "openvino_model.xml").write_bytes(xml[: len(xml) // 2])  # truncated mid-way
    (folder / "empty.gguf").write_bytes(b"")
    (folder / "notes.txt").write_text("not a model")
    (folder / "half-copied").mkdir()
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_folder) -> Iterator[str]:
    """The demo model (not preloaded, as the default model once model folders are named) and the
    folder's models, each unloaded after 2 s idle."""
    workdir = tmp_path_factory.mktemp("on-demand")
    config = workdir / "openarc.toml"
    config.write_text(
        f"""
models_dirs = ["{model_folder}"]
keep_alive = "2s"

[[aliases]]
name = "gpt-4o-mini"
model = "smollm2-int4"
listed = true
"""
    )
    with running_server(config, workdir / "server.log") as root:
        yield root


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=300) as session:
        yield session


def test_every_model_is_listed_unloaded_with_its_kind_and_size(http):
    listed = models(http)
    demo, int4, minilm = listed["SmolLM2-135M-Instruct"], listed["smollm2-int4"], listed["minilm"]
    assert (demo["state"], int4["state"], minilm["state"]) == ("unloaded",) * 3
    assert (demo["kind"], int4["kind"], minilm["kind"]) == ("chat", "chat", "embedding")
    assert demo["size_bytes"] == demo_file().stat().st_size and int4["size_bytes"] > 10**7
    assert all(m["memory_bytes"] is None and m["device"] == "CPU" for m in (demo, int4, minilm))
    assert listed["gpt-4o-mini"]["state"] == "unloaded", "a listed alias shows its model's state"
    # A corrupt export and an empty GGUF look like models: listed, and found out when asked for.
    assert listed["broken-ir"]["state"] == listed["empty"]["state"] == "unloaded"
    assert "notes" not in listed and "half-copied" not in listed and "notes.txt" not in listed
    assert http.get("/ready").status_code == 200, "nothing preloaded: ready to load on demand"


def demo_file() -> Path:
    return demo_model_path(ServerConfig().cache_path)


def test_first_request_loads_the_model_and_one_arriving_during_the_load_joins_it(http, server):
    async def two_requests() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server, timeout=300) as client:
            body = {"model": "smollm2-int4", "messages": CHAT, "max_tokens": 8}
            first = asyncio.create_task(client.post("/v1/chat/completions", json=body))
            await asyncio.sleep(0.3)  # the first has started the load (it takes seconds)
            state = (await client.get("/v1/models/smollm2-int4")).json()["state"]
            second = await client.post("/v1/chat/completions", json=body)
            return [await first, second, state]

    first, second, state_during = asyncio.run(two_requests())
    assert state_during == "loading"
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["choices"][0]["message"]["content"]
    entry = admin(http)["smollm2-int4"]
    assert entry["loads"] == 1, "both requests waited for one load"
    assert entry["last_load_seconds"] > 0
    listed = models(http)["smollm2-int4"]
    assert listed["state"] == "ready" and listed["inference_precision"] == "f32"


def test_embedding_model_loads_on_first_use(http):
    response = embed(http, "minilm")
    assert response.status_code == 200, response.text
    assert len(response.json()["data"][0]["embedding"]) == 384


def test_idle_model_is_unloaded_after_keep_alive_and_loads_again(http):
    assert chat(http, "SmolLM2-135M-Instruct").status_code == 200
    entry = admin(http)["SmolLM2-135M-Instruct"]
    loads = entry["loads"]
    assert entry["keep_alive"] == 2.0
    wait_for(lambda: models(http)["SmolLM2-135M-Instruct"]["state"] == "unloaded", 30, "the idle unload")
    assert chat(http, "SmolLM2-135M-Instruct").status_code == 200
    assert admin(http)["SmolLM2-135M-Instruct"]["loads"] == loads + 1


def test_running_stream_keeps_its_model_loaded_past_keep_alive(http, server):
    """Its state is read while the stream runs, 3 s in (past the 2 s keep_alive)."""
    states = []

    def look_later() -> None:
        time.sleep(3.0)
        states.append(models(http)["smollm2-int4"]["state"])

    watcher = threading.Thread(target=look_later)
    with httpx.Client(base_url=server, timeout=300) as streaming:
        watcher.start()
        tokens, finish = stream_usage(streaming, "smollm2-int4", 1000)
    watcher.join()
    assert (tokens, finish) == (1000, "length"), "the stream ran to its end"
    assert states == ["ready"], "the stream kept its model loaded"
    wait_for(lambda: models(http)["smollm2-int4"]["state"] == "unloaded", 30, "the unload once idle")


def test_request_keep_alive_zero_unloads_once_the_request_is_done(http):
    response = chat(http, "smollm2-int4", keep_alive=0)
    assert response.status_code == 200
    wait_for(lambda: models(http)["smollm2-int4"]["state"] == "unloaded", 10, "the unload at once")
    bad = chat(http, "smollm2-int4", keep_alive="soon")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "keep_alive"


def test_corrupt_models_fail_with_their_reason_and_the_others_keep_serving(http, model_folder):
    for name in ("broken-ir", "empty"):
        first = chat(http, name)
        assert first.status_code == 400, first.text
        error = first.json()["error"]
        assert error["code"] == "model_load_failed" and error["param"] == "model"
        assert f"'{name}' cannot be loaded: " in error["message"]
        assert models(http)[name]["state"] == "failed"
        assert admin(http)[name]["error"] in error["message"]
        again = chat(http, name)  # the same files: not tried again
        assert again.status_code == 400 and again.json()["error"]["message"] == error["message"]
    assert chat(http, "gpt-4o-mini").status_code == 200, "an alias of a folder model loads it"
    assert embed(http, "minilm").status_code == 200
    assert http.get("/ready").status_code == 200, "a model that fails on demand does not unready the server"
    # Fixed files load on the next request, with no operator.
    shutil.copyfile(demo_file(), model_folder / "empty.gguf")
    fixed = chat(http, "empty")
    assert fixed.status_code == 200, fixed.text


def test_admin_unloads_and_loads_a_listed_model(http):
    assert http.post("/admin/models/minilm").status_code == 200
    assert models(http)["minilm"]["state"] == "ready"
    unloaded = http.delete("/admin/models/minilm")
    assert unloaded.status_code == 200 and unloaded.json()["state"] == "unloaded"
    assert models(http)["minilm"]["state"] == "unloaded", "a folder model stays listed"
    assert embed(http, "minilm").status_code == 200, "and loads again when asked for"


def test_metrics_count_loads_unloads_and_memory(http):
    chat(http, "smollm2-int4")
    families = parse(http.get("/metrics").text)
    assert value(families, "openarc_model_loads_total", model="smollm2-int4") >= 2
    assert value(families, "openarc_model_unloads_total", model="smollm2-int4", reason="idle") >= 1
    assert value(families, "openarc_model_unloads_total", model="minilm", reason="admin") >= 1
    assert value(families, "openarc_model_load_failures_total", model="broken-ir") == 1
    assert value(families, "openarc_model_load_seconds_total", model="smollm2-int4") > 0
    assert value(families, "openarc_loaded_memory_bytes") > 0


def test_models_command_lists_a_folder_and_a_running_server(model_folder, server):
    from encoder_models import openarc

    offline = openarc("models", "--models-dir", str(model_folder))
    assert offline.returncode == 0, offline.stderr
    rows = {line.split()[0]: line for line in offline.stdout.splitlines()[1:]}
    assert "embedding" in rows["minilm"] and "on first use" in rows["minilm"]
    assert "chat" in rows["smollm2-int4"] and "openarc export int4" in rows["smollm2-int4"]
    live = openarc("models", "--url", server)
    assert live.returncode == 0, live.stderr
    header, *lines = live.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "STATE", "KIND"]
    states = {line.split()[0]: line.split()[1] for line in lines}
    assert states["broken-ir"] == "failed" and states["minilm"] in ("ready", "unloaded")


# --- a memory budget that holds two of the three models ------------------------------------------


@pytest.fixture(scope="module")
def budget_server(tmp_path_factory, exports) -> Iterator[str]:  # noqa: F811
    """5.6 GB: two chat models (about 2.7 GB each at worst, with their 2 GB KV cache) fit, not a third
    model beside them. Nothing unloads on a timer; MiniLM gives up waiting for room after 3 s."""
    workdir = tmp_path_factory.mktemp("budget")
    config = workdir / "openarc.toml"
    config.write_text(
        f"""
models_dirs = []
max_loaded_memory = "5.6GB"
keep_alive = -1

[[models]]
id = "demo"
source = "demo"
preload = false

[[models]]
id = "int4"
source = "{exports["int4"]}"
preload = false

[[models]]
id = "minilm"
source = "{minilm_export()}"
preload = false
request_timeout = 3
"""
    )
    with running_server(config, workdir / "server.log") as root:
        yield root


def test_budget_unloads_the_least_recently_used_idle_model(budget_server):
    with httpx.Client(base_url=budget_server, timeout=300) as http:
        assert chat(http, "demo").status_code == 200
        assert chat(http, "int4").status_code == 200
        assert embed(http, "minilm").status_code == 200
        states = {name: m["state"] for name, m in models(http).items()}
        assert states == {"demo": "unloaded", "int4": "ready", "minilm": "ready"}, "demo was used longest ago"
        listing = http.get("/admin/models").json()
        assert listing["max_loaded_memory_bytes"] == 5_600_000_000
        assert 0 < listing["memory_in_use_bytes"] <= 5_600_000_000
        families = parse(http.get("/metrics").text)
        assert value(families, "openarc_model_unloads_total", model="demo", reason="budget") == 1


def test_budget_waits_for_a_busy_model_and_never_cuts_a_running_request(budget_server):
    """Both chat models stream; MiniLM cannot load beside them: it waits, and gives up (503) when its
    3 s run out. Once the streams end, it loads in place of one of them. Neither stream is cut."""

    with httpx.Client(base_url=budget_server, timeout=300) as http:
        assert chat(http, "demo").status_code == chat(http, "int4").status_code == 200
        assert {m["id"] for m in models(http).values() if m["state"] == "ready"} == {"demo", "int4"}
        done: dict[str, tuple[int, str | None]] = {}
        streams = [
            threading.Thread(target=lambda m=m: done.update({m: stream_usage(http, m, 1000)}))
            for m in ("demo", "int4")
        ]
        for thread in streams:
            thread.start()
        wait_for(
            lambda: all(a["running"] for n, a in admin(http).items() if n != "minilm"), 60, "both streams"
        )
        refused = embed(http, "minilm")
        still_running = all(a["running"] for n, a in admin(http).items() if n != "minilm")
        for thread in streams:
            thread.join()
        served = embed(http, "minilm")
    assert still_running, "the streams outlasted the wait (else this test proves nothing)"
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "model_budget_exhausted"
    assert "max_loaded_memory" in refused.json()["error"]["message"] and refused.headers["Retry-After"]
    assert done == {"demo": (1000, "length"), "int4": (1000, "length")}, "neither stream was cut"
    assert served.status_code == 200, served.text


# --- five models, room for one -----------------------------------------------------------------------


def test_five_first_requests_under_a_budget_of_one(tmp_path, exports):  # noqa: F811
    ids = ["demo-a", "demo-b", "demo-c", "int4", "minilm"]
    sources = ["demo", "demo", "demo", str(exports["int4"]), str(minilm_export())]
    entries = "".join(
        f'\n[[models]]\nid = "{i}"\nsource = "{s}"\npreload = false\nrequest_timeout = 120\n'
        for i, s in zip(ids, sources, strict=True)
    )
    config = tmp_path / "openarc.toml"
    config.write_text(f"models_dirs = []\nmax_loaded_models = 1\nkeep_alive = -1\n{entries}")

    async def all_at_once(root: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=root, timeout=300) as client:
            requests = [
                client.post("/v1/embeddings", json={"model": i, "input": "hi"})
                if i == "minilm"
                else client.post("/v1/chat/completions", json={"model": i, "messages": CHAT, "max_tokens": 4})
                for i in ids
            ]
            return await asyncio.gather(*requests)

    with running_server(config, tmp_path / "server.log") as root:
        answers = asyncio.run(all_at_once(root))
        for answer in answers:
            assert answer.status_code in (200, 503), answer.text
            if answer.status_code == 503:
                assert answer.json()["error"]["code"] == "model_budget_exhausted"
        assert sum(a.status_code == 200 for a in answers) >= 1
        assert httpx.get(f"{root}/health").status_code == 200
        loaded = [m for m in httpx.get(f"{root}/v1/models").json()["data"] if m["state"] == "ready"]
        assert len(loaded) == 1
        wanted = 1 if loaded[0]["kind"] == "embedding" else 2  # an encoder, or an engine and its preparer
        wait_for(lambda: len(server_children(root)) == wanted, 30, "the unloaded models' processes to exit")
        assert httpx.delete(f"{root}/admin/models/{loaded[0]['id']}").status_code == 200
        wait_for(lambda: not server_children(root), 30, "the last model's processes to exit")


# --- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(0, 0.0), (-1, None), ("-1", None), ("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("500ms", 0.5)],
)
def test_durations_read_as_ollama_reads_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "5 minutes", "", "1x", "m5"])
def test_unreadable_durations_are_refused(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_memory_sizes():
    assert parse_memory("12GB", 0) == 12 * 10**9
    assert parse_memory("8GiB", 0) == 8 * 2**30
    assert parse_memory("75%", 16 * 10**9) == 12 * 10**9
    assert parse_memory(1024, 0) == 1024
    for bad in ("12 parsecs", "0%", "150%"):
        with pytest.raises(ValueError):
            parse_memory(bad, 16 * 10**9)


def test_bad_budget_or_keep_alive_stops_the_start_with_one_line(tmp_path):
    from encoder_models import openarc

    for setting in ('max_loaded_memory = "lots"', 'keep_alive = "soon"'):
        config = tmp_path / "bad.toml"
        config.write_text(setting + "\n")
        result = openarc("serve", "--config", str(config), "--port", "0")
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert "not a memory size: 'lots'" in result.stderr or "not a duration: 'soon'" in result.stderr
