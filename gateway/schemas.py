"""OpenAI wire types as msgspec Structs, declared once, named as in the official SDK.

Requests skip unknown fields (clients send vendor extras); a known field with the wrong type or an
out-of-range value fails strict decoding, and the error names the field. Response fields that OpenAI
sends as ``null`` are typed ``X | None`` and always written.
Reference: https://platform.openai.com/docs/api-reference/chat
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

MAX_CHOICES = 8
"""Upper bound on ``n``: each choice is a full sequence in the engine."""
MAX_STOP_SEQUENCES = 4
"""OpenAI allows up to 4 stop sequences."""
MAX_INT32 = 2**31 - 1
"""Bound on token counts: the engine takes them as 32-bit integers (and past 2**64 they cannot even be
encoded for the engine channel)."""


class Wire(Struct, kw_only=True, omit_defaults=False):
    """Base of every wire type (msgspec does not inherit ``kw_only``, so each subclass repeats it)."""


# --- request -----------------------------------------------------------------------------------------


class ContentPart(Wire, kw_only=True, tag_field="type", tag="text"):
    """A text part of a message's ``content`` list; other part types are rejected as unsupported."""

    text: str


MessageContent = str | list[ContentPart]


class SystemMessage(Wire, kw_only=True, tag_field="role", tag="system"):
    content: MessageContent
    name: str | None = None


class DeveloperMessage(Wire, kw_only=True, tag_field="role", tag="developer"):
    content: MessageContent
    name: str | None = None


class UserMessage(Wire, kw_only=True, tag_field="role", tag="user"):
    content: MessageContent
    name: str | None = None


class Function(Wire, kw_only=True):
    name: str
    arguments: str
    """A JSON object, encoded as a string (as OpenAI sends it)."""


class ChatCompletionMessageToolCall(Wire, kw_only=True):
    id: str
    type: Literal["function"] = "function"
    function: Function


class AssistantMessage(Wire, kw_only=True, tag_field="role", tag="assistant"):
    # Optional: an assistant turn that only called tools has no content.
    content: MessageContent | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None


class ToolMessage(Wire, kw_only=True, tag_field="role", tag="tool"):
    content: MessageContent
    tool_call_id: str


ChatCompletionMessageParam = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage


class FunctionDefinition(Wire, kw_only=True):
    # UNSET when absent, so the chat template sees only what the client sent.
    name: str
    description: str | None | UnsetType = UNSET
    parameters: dict[str, Any] | None | UnsetType = UNSET
    strict: bool | None | UnsetType = UNSET


class ChatCompletionTool(Wire, kw_only=True):
    type: Literal["function"]
    function: FunctionDefinition


class StreamOptions(Wire, kw_only=True):
    include_usage: bool = False


Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]


class ChatCompletionRequest(Wire, kw_only=True):
    """``POST /v1/chat/completions`` body, in OpenAI reference order, then OpenArc extensions."""

    messages: Annotated[list[ChatCompletionMessageParam], Meta(min_length=1)]
    model: str
    frequency_penalty: Penalty = 0.0
    logprobs: bool = False
    max_completion_tokens: Annotated[int, Meta(ge=1, le=MAX_INT32)] | None = None
    max_tokens: Annotated[int, Meta(ge=1, le=MAX_INT32)] | None = None
    n: Annotated[int, Meta(ge=1, le=MAX_CHOICES)] = 1
    presence_penalty: Penalty = 0.0
    seed: Annotated[int, Meta(ge=0, le=2**63 - 1)] | None = None
    stop: str | Annotated[list[str], Meta(max_length=MAX_STOP_SEQUENCES)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] | None = None
    # Passed to the chat template; the output is not parsed into tool calls yet (issue 8).
    tools: list[ChatCompletionTool] | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    top_p: Annotated[float, Meta(gt=0.0, le=1.0)] | None = None
    # Accepted and ignored: they do not change what the model generates.
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    # OpenArc extensions (as in vLLM and llama.cpp server).
    top_k: Annotated[int, Meta(ge=0, le=MAX_INT32)] = 0
    min_p: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.0
    repetition_penalty: Annotated[float, Meta(gt=0.0, le=10.0)] = 1.0
    ignore_eos: bool = False


# --- responses ---------------------------------------------------------------------------------------

FinishReason = Literal["stop", "length"]


class PromptTokensDetails(Wire, kw_only=True):
    cached_tokens: int = 0


class CompletionUsage(Wire, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | UnsetType = UNSET


class ChatCompletionMessage(Wire, kw_only=True):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: str | None = None


class Choice(Wire, kw_only=True):
    index: int
    message: ChatCompletionMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(Wire, kw_only=True):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    system_fingerprint: str | None = None


class ChoiceDelta(Wire, kw_only=True, omit_defaults=True):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType = UNSET


class ChunkChoice(Wire, kw_only=True):
    index: int
    delta: ChoiceDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(Wire, kw_only=True):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    system_fingerprint: str | None = None
    # Present (as null) on every chunk only when usage was asked for, as OpenAI does.
    usage: CompletionUsage | None | UnsetType = UNSET


# --- models ------------------------------------------------------------------------------------------


class Model(Wire, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # OpenArc extensions.
    device: str
    context_length: int | None
    status: str = "ready"


class ModelList(Wire, kw_only=True):
    object: Literal["list"] = "list"
    data: list[Model]


# --- errors ------------------------------------------------------------------------------------------


class ErrorBody(Wire, kw_only=True):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(Wire, kw_only=True):
    error: ErrorBody


# --- health --------------------------------------------------------------------------------------------


class AdminModel(Wire, kw_only=True):
    id: str
    state: Literal["loading", "ready", "restarting", "failed", "unloaded"]
    source: str
    device: str
    error: str | None
    warning: str | None = None
    in_flight: int
    running: int
    restarts: int = 0
    """Engine restarts after failures since the model was loaded."""
    engine_pid: int | None = None
    """The engine process's id, while it runs."""


class AdminModelList(Wire, kw_only=True):
    object: Literal["list"] = "list"
    data: list[AdminModel]


class ModelActivity(Wire, kw_only=True):
    id: str
    in_flight: int
    running: int


class Health(Wire, kw_only=True):
    status: Literal["ok"] = "ok"
    models: list[ModelActivity]


class ModelReadiness(Wire, kw_only=True):
    id: str
    state: Literal["loading", "ready", "restarting", "failed"]
    reason: str | None = None


class Readiness(Wire, kw_only=True):
    """``/ready``: 200 while every configured model is ready, else 503 listing those that are not."""

    status: Literal["ready", "not_ready"]
    models: list[ModelReadiness]


_chat_request_decoder = msgspec.json.Decoder(ChatCompletionRequest)
_LONE_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")


def decode_chat_request(body: bytes) -> ChatCompletionRequest:
    """Strict decoding: ``"max_tokens": "8"`` is a 400 naming the field, not silently coerced.

    msgspec raises ``UnicodeDecodeError`` for bytes that are not UTF-8 (its other failures are
    ``DecodeError`` or ``ValidationError``); it becomes a ``DecodeError`` so it is a 400 like them.
    """
    try:
        return _chat_request_decoder.decode(body)
    except UnicodeDecodeError as exc:
        raise msgspec.DecodeError(f"the body is not valid UTF-8 (byte {exc.start})") from None
    except msgspec.DecodeError as exc:
        # msgspec 0.22 calls a lone high surrogate escape ("\ud800") "Input data was truncated".
        lone = _LONE_HIGH_SURROGATE.search(body)
        if lone is not None and "truncated" in str(exc):
            raise msgspec.DecodeError(
                f"JSON is malformed: invalid utf-16 surrogate pair (byte {lone.start()})"
            ) from None
        raise
