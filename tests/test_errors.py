"""Bad input gets the right status and an OpenAI-shaped error, and the server keeps serving."""

from __future__ import annotations

import json

import pytest
from conftest import DEMO

GOOD = {"model": DEMO, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 5}


def request(**changes) -> dict:
    """The good request with fields changed, or removed when set to ``...``."""
    return {k: v for k, v in {**GOOD, **changes}.items() if v is not ...}


def body(**changes) -> bytes:
    return json.dumps(request(**changes)).encode()


# (name, request dict or raw body, status, type, code, param)
BAD_REQUESTS = [
    ("malformed json", b'{"model": ', 400, "invalid_request_error", None, None),
    ("not an object", b"[1, 2]", 400, "invalid_request_error", None, None),
    ("missing messages", request(messages=...), 400, "invalid_request_error", None, "messages"),
    ("missing model", request(model=...), 400, "invalid_request_error", None, "model"),
    ("empty messages", request(messages=[]), 400, "invalid_request_error", None, "messages"),
    ("max_tokens as string", request(max_tokens="8"), 400, "invalid_request_error", None, "max_tokens"),
    ("max_tokens zero", request(max_tokens=0), 400, "invalid_request_error", None, "max_tokens"),
    ("temperature too high", request(temperature=2.5), 400, "invalid_request_error", None, "temperature"),
    ("top_p zero", request(top_p=0), 400, "invalid_request_error", None, "top_p"),
    ("n too large", request(n=100), 400, "invalid_request_error", None, "n"),
    (
        "penalty out of range",
        request(presence_penalty=3),
        400,
        "invalid_request_error",
        None,
        "presence_penalty",
    ),
    ("too many stops", request(stop=["a", "b", "c", "d", "e"]), 400, "invalid_request_error", None, "stop"),
    ("stream not bool", request(stream="yes"), 400, "invalid_request_error", None, "stream"),
    (
        "unknown role",
        request(messages=[{"role": "wizard", "content": "x"}]),
        400,
        "invalid_request_error",
        None,
        "messages[0]",
    ),
    (
        "content not text",
        request(messages=[{"role": "user", "content": 5}]),
        400,
        "invalid_request_error",
        None,
        "messages[0].content",
    ),
    (
        "image part",
        request(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        400,
        "invalid_request_error",
        None,
        "messages[0].content[0]",
    ),
    (
        "top_logprobs",
        request(logprobs=True, top_logprobs=2),
        400,
        "invalid_request_error",
        "unsupported_parameter",
        "top_logprobs",
    ),
    (
        "unknown model",
        request(model="no-such-model"),
        404,
        "invalid_request_error",
        "model_not_found",
        "model",
    ),
    (
        "completion too long",
        request(max_tokens=9000),
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
    ),
    (
        "prompt too long",
        request(messages=[{"role": "user", "content": "hello " * 9000}]),
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
    ),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("name", "raw", "status", "type_", "code", "param"), BAD_REQUESTS, ids=[r[0] for r in BAD_REQUESTS]
)
def test_bad_request(http, name, raw, status, type_, code, param, stream):
    if isinstance(raw, dict):
        raw = json.dumps({"stream": stream, **raw}).encode()
    response = http.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), "errors come before any SSE byte"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == (type_, code)
    if param is None:
        assert error["param"] is None
    else:
        assert error["param"] is not None and error["param"].startswith(param), error
    assert error["message"]
    _still_serves(http)


def test_context_length_message_uses_openai_wording(http):
    response = http.post("/v1/chat/completions", content=body(max_tokens=9000))
    message = response.json()["error"]["message"]
    assert message.startswith("This model's maximum context length is 8192 tokens. However, you requested ")
    prompt_tokens = int(message.split("(")[1].split(" in the messages")[0])
    assert f"{prompt_tokens + 9000} tokens" in message


def test_context_length_message_counts_past_the_tokenizers_cut(http):
    # The demo GGUF's tokenizer cuts every encoding at 8192 tokens; a prompt of ~3x that must not be
    # reported as "8192 in the messages" (what Open WebUI users saw with its 26,000-character tools).
    words = " ".join(f"word{i}" for i in range(8000))  # about 3 tokens each
    response = http.post("/v1/chat/completions", content=body(messages=[{"role": "user", "content": words}]))
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    prompt_tokens = int(message.split("(about ")[1].split(" in the messages")[0])
    assert prompt_tokens > 20_000, message


def test_oversized_body_is_413(http):
    huge = body(messages=[{"role": "user", "content": "x" * (9 * 1024 * 1024)}])
    response = http.post("/v1/chat/completions", content=huge)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"
    _still_serves(http)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
        ("POST", "/v1/models", 405, "method_not_allowed"),
        ("GET", "/v1/no-such-endpoint", 404, "not_found"),
    ],
)
def test_routing_errors_are_openai_shaped(http, method, path, status, code):
    response = http.request(method, path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    _still_serves(http)


def _still_serves(http) -> None:
    response = http.post("/v1/chat/completions", content=body())
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
