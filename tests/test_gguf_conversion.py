"""A GGUF model is converted to an IR folder once, then loaded from there (gguf_conversion)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import openvino_genai as ov_genai
import pytest
from conftest import DEMO

from adapters.openvino.gguf_conversion import DONE, converted_folder, ensure_converted
from gateway.config import ServerConfig
from gateway.sources import ensure_demo_model

PROMPTS = ["What is the capital of France?", "Write a haiku about rivers.", "List three prime numbers."]


@pytest.fixture(scope="module")
def gguf() -> Path:
    return ensure_demo_model(ServerConfig().cache_path)


@pytest.fixture(scope="module")
def converted(gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One conversion into a fresh cache, with the leftovers of a killed conversion already there."""
    root = tmp_path_factory.mktemp("converted")
    leftover = converted_folder(gguf, root).with_name(converted_folder(gguf, root).name + ".partial")
    leftover.mkdir(parents=True)
    (leftover / "openvino_model.xml").write_text("half-written")
    return root, ensure_converted(gguf, root)


def test_conversion_is_kept_and_reused(gguf, converted):
    root, folder = converted
    assert folder == converted_folder(gguf, root) != gguf
    for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml", DONE):
        assert (folder / name).is_file(), name
    assert not (folder / "model.gguf").exists(), "the link to the GGUF is not kept"
    assert [p.name for p in root.iterdir() if p.name.endswith(".partial")] == []
    done = (folder / DONE).stat().st_mtime_ns
    assert ensure_converted(gguf, root) == folder
    assert (folder / DONE).stat().st_mtime_ns == done, "a second load must not convert again"


def test_converted_folder_answers_as_the_gguf_does(gguf, converted):
    _, folder = converted
    config = ov_genai.GenerationConfig(max_new_tokens=32)  # greedy
    from_gguf = ov_genai.LLMPipeline(str(gguf), "CPU")
    from_folder = ov_genai.LLMPipeline(str(folder), "CPU")
    assert from_folder.get_tokenizer().chat_template == from_gguf.get_tokenizer().chat_template
    for prompt in PROMPTS:
        chat = ov_genai.ChatHistory([{"role": "user", "content": prompt}])
        assert str(from_folder.generate(chat, config)) == str(from_gguf.generate(chat, config)), prompt


def test_a_changed_gguf_is_converted_again(gguf, tmp_path):
    copy = tmp_path / gguf.name
    shutil.copyfile(gguf, copy)
    before = converted_folder(copy, tmp_path / "cache")
    os.utime(copy, ns=(0, 1_000_000_000))
    assert converted_folder(copy, tmp_path / "cache") != before


def test_unwritable_cache_serves_the_gguf_with_a_warning(gguf, tmp_path, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="adapters.openvino.gguf_conversion"):
        assert ensure_converted(gguf, blocked) == gguf
    assert "without a kept conversion" in caplog.text


def test_the_server_loads_the_demo_model_from_its_conversion(http, gguf):
    # The session's server (conftest) converted the demo GGUF into the default cache at its start.
    folder = converted_folder(gguf, ServerConfig().cache_path / "converted")
    assert (folder / DONE).is_file()
    # Its context length still comes from the GGUF (the converted folder has no config.json).
    models = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert models[DEMO]["context_length"] == 8192
