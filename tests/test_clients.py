"""The client libraries users actually point at OpenArc, unchanged but for the base URL."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import msgspec
import pytest
from conftest import DEMO
from helpers import ROOT
from langchain_openai import ChatOpenAI
from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def langchain_llm(base_url):
    return ChatOpenAI(
        base_url=base_url, model=DEMO, api_key="unused", temperature=0, max_tokens=30, max_retries=0
    )


@pytest.fixture(scope="module")
def llamaindex_llm(base_url):
    return OpenAILike(
        api_base=base_url, model=DEMO, api_key="unused", is_chat_model=True, temperature=0, max_tokens=30
    )


def test_langchain_invoke_and_stream(langchain_llm):
    answer = langchain_llm.invoke(QUESTION)
    assert "Paris" in answer.content
    assert answer.response_metadata["finish_reason"] == "stop"
    streamed = "".join(chunk.content for chunk in langchain_llm.stream(QUESTION))
    assert streamed == answer.content


def test_llamaindex_chat_and_stream_chat(llamaindex_llm):
    messages = [ChatMessage(role="user", content=QUESTION)]
    reply = llamaindex_llm.chat(messages)
    assert "Paris" in reply.message.content
    parts = list(llamaindex_llm.stream_chat(messages))
    assert "".join(p.delta for p in parts) == reply.message.content
    assert parts[-1].message.content == reply.message.content


def test_raw_sse_reader(server_root):
    """Read the stream as Open WebUI does: plain `data:` lines separated by blank lines, then [DONE]."""
    request = {
        "model": DEMO,
        "messages": [{"role": "user", "content": QUESTION}],
        "temperature": 0,
        "stream": True,
    }
    with httpx.stream("POST", f"{server_root}/v1/chat/completions", json=request, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    payloads = events[:-2]
    assert all(e.startswith("data: ") and "\n" not in e for e in payloads), "one data line per event"
    chunks = [msgspec.json.decode(e.removeprefix("data: ")) for e in payloads]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "Paris" in "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)


@pytest.mark.parametrize(
    "script",
    ["openai_sdk.py", "langchain_chat.py", "llamaindex_chat.py", "tool_calling.py", "structured_output.py"],
)
def test_examples_run(base_url, script):
    env = {**os.environ, "OPENARC_BASE_URL": base_url}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) >= 2, result.stdout
