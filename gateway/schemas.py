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

from adapters.base import FinishReason

MAX_CHOICES = 8
"""Upper bound on ``n``: each choice is a full sequence in the engine."""
MAX_STOP_SEQUENCES = 4
"""OpenAI allows up to 4 stop sequences."""
MAX_PROMPTS = 64
"""Upper bound on the prompts of one ``/v1/completions`` request: each runs as its own request."""
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


class ToolChoiceFunction(Wire, kw_only=True):
    name: str


class NamedToolChoice(Wire, kw_only=True):
    type: Literal["function"]
    function: ToolChoiceFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class ResponseFormatText(Wire, kw_only=True, tag_field="type", tag="text"):
    pass


class ResponseFormatJSONObject(Wire, kw_only=True, tag_field="type", tag="json_object"):
    pass


class JSONSchema(Wire, kw_only=True):
    name: Annotated[str, Meta(pattern="^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    schema: dict[str, Any] | None = None
    """``None`` means any JSON value, as OpenAI takes it."""
    strict: bool | None = None


class ResponseFormatJSONSchema(Wire, kw_only=True, tag_field="type", tag="json_schema"):
    json_schema: JSONSchema


ResponseFormat = ResponseFormatText | ResponseFormatJSONObject | ResponseFormatJSONSchema


ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]


class StreamOptions(Wire, kw_only=True):
    include_usage: bool = False


# Bounds shared by the request types (chat, completions, and the Responses and Messages dialects), each
# declared once so the APIs cannot drift apart.
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
MaxTokens = Annotated[int, Meta(ge=1, le=MAX_INT32)]
ChoiceCount = Annotated[int, Meta(ge=1, le=MAX_CHOICES)]
Seed = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Stop = str | Annotated[list[str], Meta(max_length=MAX_STOP_SEQUENCES)]
Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
TopLogprobs = Annotated[int, Meta(ge=0, le=20)]
TopP = Annotated[float, Meta(gt=0.0, le=1.0)]
TopK = Annotated[int, Meta(ge=0, le=MAX_INT32)]
MinP = Annotated[float, Meta(ge=0.0, le=1.0)]
RepetitionPenalty = Annotated[float, Meta(gt=0.0, le=10.0)]
NumAssistantTokens = Annotated[int, Meta(ge=1, le=64)]
MaxNgramSize = Annotated[int, Meta(ge=1, le=64)]
Duration = float | str
"""A time span: seconds as a number, or Go's form as Ollama takes it (``"30s"``, ``"5m"``, ``"1h30m"``,
``"500ms"``); a negative span means "forever"."""


class ChatCompletionRequest(Wire, kw_only=True):
    """``POST /v1/chat/completions`` body, in OpenAI reference order, then OpenArc extensions."""

    messages: Annotated[list[ChatCompletionMessageParam], Meta(min_length=1)]
    model: str
    frequency_penalty: Penalty = 0.0
    logprobs: bool = False
    max_completion_tokens: MaxTokens | None = None
    max_tokens: MaxTokens | None = None
    n: ChoiceCount = 1
    parallel_tool_calls: bool = True
    presence_penalty: Penalty = 0.0
    response_format: ResponseFormat | None = None
    seed: Seed | None = None
    stop: Stop | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    tool_choice: ToolChoice | None = None
    tools: list[ChatCompletionTool] | None = None
    top_logprobs: TopLogprobs | None = None
    top_p: TopP | None = None
    # Accepted and ignored: they do not change what the model generates.
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    prediction: dict[str, Any] | None = None
    """A hint for speculative decoding; the output is the same without it."""
    verbosity: str | None = None
    # Refused when set (400 unsupported_parameter): ignoring them would change the answer silently.
    logit_bias: dict[str, float] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    # OpenArc extensions (as in vLLM and llama.cpp server).
    top_k: TopK | None = None
    min_p: MinP | None = None
    repetition_penalty: RepetitionPenalty | None = None
    ignore_eos: bool = False
    num_assistant_tokens: NumAssistantTokens | None = None
    """Speculative decoding: tokens guessed per step, for a model served with it (as in OVMS)."""
    max_ngram_size: MaxNgramSize | None = None
    """Prompt-lookup decoding: the longest n-gram matched against the prompt."""
    chat_template_kwargs: dict[str, Any] | None = None
    """Variables for the chat template, from an allow-list (``enable_thinking``, ``thinking``,
    ``reasoning_effort``), as in vLLM."""
    reasoning_effort: ReasoningEffort | None = None
    """OpenAI's field, given to the chat template as ``reasoning_effort`` (gpt-oss reads it); ``none``,
    ``minimal`` and ``low`` also set ``enable_thinking`` false (Qwen3's switch). ``chat_template_kwargs``
    wins over both; a template that reads neither ignores it."""
    keep_alive: Duration | None = None
    """How long the model stays loaded once idle from now on, as in Ollama (``"10m"``, 0, -1 for ever)."""


class CompletionRequest(Wire, kw_only=True):
    """``POST /v1/completions`` body (legacy text completion), then OpenArc extensions as in chat."""

    model: str
    prompt: str | Annotated[list[str], Meta(min_length=1, max_length=MAX_PROMPTS)]
    best_of: ChoiceCount | None = None
    echo: bool = False
    frequency_penalty: Penalty = 0.0
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    max_tokens: MaxTokens | None = 16
    """OpenAI's default is 16 tokens; ``null`` lets the completion fill the context window."""
    n: ChoiceCount = 1
    presence_penalty: Penalty = 0.0
    seed: Seed | None = None
    stop: Stop | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    user: str | None = None
    top_k: TopK | None = None
    min_p: MinP | None = None
    repetition_penalty: RepetitionPenalty | None = None
    ignore_eos: bool = False
    num_assistant_tokens: NumAssistantTokens | None = None
    max_ngram_size: MaxNgramSize | None = None
    keep_alive: Duration | None = None
    """As in chat completions."""


MAX_EMBEDDING_INPUTS = 2048
"""OpenAI's limit on the inputs of one embeddings request."""
MAX_RERANK_DOCUMENTS = 1000


class EmbeddingRequest(Wire, kw_only=True):
    """``POST /v1/embeddings``: ``input`` is a string, a list of strings, a token array or a list of them."""

    # One list type for all three list forms (msgspec takes one array type per union); the gateway
    # checks that its items are all strings, all token ids, or all token arrays.
    input: str | Annotated[list[str | int | list[int]], Meta(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Meta(ge=1)] | None = None
    user: str | None = None
    keep_alive: Duration | None = None
    """As in chat completions."""


class RerankDocument(Wire, kw_only=True):
    text: str


class RerankRequest(Wire, kw_only=True):
    """``POST /v1/rerank`` (Cohere and Jina's shape, which LangChain's and LlamaIndex's rerankers speak)."""

    model: str
    query: str
    documents: Annotated[list[str | RerankDocument], Meta(min_length=1, max_length=MAX_RERANK_DOCUMENTS)]
    top_n: Annotated[int, Meta(ge=1)] | None = None
    return_documents: bool = False
    """Cohere's default; Jina's is true."""
    keep_alive: Duration | None = None
    """As in chat completions."""


# --- responses ---------------------------------------------------------------------------------------


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
    tool_calls: list[ChatCompletionMessageToolCall] | UnsetType = UNSET
    # As vLLM and llama.cpp server name it; present only for models that reason.
    reasoning_content: str | UnsetType = UNSET


class TopLogprob(Wire, kw_only=True):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatCompletionTokenLogprob(Wire, kw_only=True):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]
    """Always empty: openvino-genai reports only the chosen token (``top_logprobs`` > 0 is refused)."""


class ChoiceLogprobs(Wire, kw_only=True):
    content: list[ChatCompletionTokenLogprob] | None
    refusal: None = None


class Choice(Wire, kw_only=True):
    index: int
    message: ChatCompletionMessage
    finish_reason: FinishReason
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(Wire, kw_only=True):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    system_fingerprint: str | None = None


class ChoiceDeltaToolCallFunction(Wire, kw_only=True, omit_defaults=True):
    name: str | UnsetType = UNSET
    arguments: str | UnsetType = UNSET


class ChoiceDeltaToolCall(Wire, kw_only=True, omit_defaults=True):
    """A piece of a streamed tool call: the first piece of each call carries id, type and name."""

    index: int
    id: str | UnsetType = UNSET
    type: Literal["function"] | UnsetType = UNSET
    function: ChoiceDeltaToolCallFunction


class ChoiceDelta(Wire, kw_only=True, omit_defaults=True):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType = UNSET
    reasoning_content: str | UnsetType = UNSET
    tool_calls: list[ChoiceDeltaToolCall] | UnsetType = UNSET


class ChunkChoice(Wire, kw_only=True):
    index: int
    delta: ChoiceDelta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(Wire, kw_only=True):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    system_fingerprint: str | None = None
    # Present (as null) on every chunk only when usage was asked for, as OpenAI does.
    usage: CompletionUsage | None | UnsetType = UNSET


class CompletionLogprobs(Wire, kw_only=True):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: None = None
    text_offset: list[int]


class CompletionChoice(Wire, kw_only=True):
    text: str
    index: int
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason | None = None


class Completion(Wire, kw_only=True):
    """A ``/v1/completions`` answer, and (with ``finish_reason`` null until the end) each streamed chunk."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    system_fingerprint: str | None = None
    usage: CompletionUsage | None | UnsetType = UNSET


class Embedding(Wire, kw_only=True):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str
    """Floats, or with ``encoding_format: "base64"`` the float32 little-endian bytes in base64."""


class EmbeddingUsage(Wire, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(Wire, kw_only=True):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class RerankResult(Wire, kw_only=True):
    index: int
    relevance_score: float
    document: RerankDocument | UnsetType = UNSET


class RerankUsage(Wire, kw_only=True):
    total_tokens: int


class RerankResponse(Wire, kw_only=True):
    id: str
    model: str
    results: list[RerankResult]
    """Best first; ``index`` is the document's position in the request."""
    usage: RerankUsage


# --- models ------------------------------------------------------------------------------------------


ModelState = Literal["unloaded", "loading", "ready", "restarting", "failed"]
"""Where a model is in its life (see ``gateway.registry``); the one definition of the states."""


class Model(Wire, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # OpenArc extensions.
    device: str
    context_length: int | None
    state: ModelState = "ready"
    """``unloaded`` (loaded by its first request), ``loading``, ``ready``, ``restarting`` or ``failed``."""
    kind: Literal["chat", "embedding", "rerank", "auto"] = "chat"
    """What the model serves: chat and text completions, embeddings, or rerank (``auto``: not known
    until it is loaded, for a model whose files are not here yet)."""
    inference_precision: str | None = None
    """The precision the device computes in (``f32``, ``bf16``, ``f16``; ``null`` when the device decides)."""
    size_bytes: int | None = None
    """The model's files on disk."""
    memory_bytes: int | None = None
    """Its processes' resident memory while loaded (read every few seconds)."""


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
    state: ModelState
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
    inference_precision: str | None = None
    """The precision the device computes in, while the model is loaded (as in ``/v1/models``)."""
    keep_alive: float | None = None
    """Seconds the model stays loaded once idle; ``null``: for ever."""
    unloads_at: float | None = None
    """When the idle timer will unload it (Unix time), while it runs."""
    memory_bytes: int | None = None
    """Its processes' resident memory while loaded."""
    estimated_bytes: int | None = None
    """What it counts for against ``max_loaded_memory`` while loading or loaded (its worst case)."""
    loads: int = 0
    """Loads that succeeded since the server started."""
    last_load_seconds: float | None = None


class AdminModelList(Wire, kw_only=True):
    object: Literal["list"] = "list"
    data: list[AdminModel]
    memory_in_use_bytes: int = 0
    """What the models loading or loaded count for against the budget."""
    max_loaded_memory_bytes: int | None = None
    max_loaded_models: int | None = None


class ModelActivity(Wire, kw_only=True):
    id: str
    in_flight: int
    running: int


class Health(Wire, kw_only=True):
    status: Literal["ok"] = "ok"
    models: list[ModelActivity]


class ModelReadiness(Wire, kw_only=True):
    id: str
    state: ModelState
    reason: str | None = None


class Readiness(Wire, kw_only=True):
    """``/ready``: 200 while every configured model is ready, else 503 listing those that are not."""

    status: Literal["ready", "not_ready"]
    models: list[ModelReadiness]


_chat_request_decoder = msgspec.json.Decoder(ChatCompletionRequest)
_completion_request_decoder = msgspec.json.Decoder(CompletionRequest)
_embedding_request_decoder = msgspec.json.Decoder(EmbeddingRequest)
_rerank_request_decoder = msgspec.json.Decoder(RerankRequest)
_LONE_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")


def decode_chat_request(body: bytes) -> ChatCompletionRequest:
    """Strict decoding of a chat request (see ``decode_request``)."""
    return decode_request(_chat_request_decoder, body)


def decode_completion_request(body: bytes) -> CompletionRequest:
    """Strict decoding of a text completion request (see ``decode_request``)."""
    return decode_request(_completion_request_decoder, body)


def decode_embedding_request(body: bytes) -> EmbeddingRequest:
    """Strict decoding of a ``/v1/embeddings`` body (see ``decode_request``)."""
    return decode_request(_embedding_request_decoder, body)


def decode_rerank_request(body: bytes) -> RerankRequest:
    """Strict decoding of a ``/v1/rerank`` body (see ``decode_request``)."""
    return decode_request(_rerank_request_decoder, body)


def decode_request(decoder: msgspec.json.Decoder, body: bytes) -> Any:
    """Strict decoding: ``"max_tokens": "8"`` is a 400 naming the field, not silently coerced.

    msgspec raises ``UnicodeDecodeError`` for bytes that are not UTF-8 (its other failures are
    ``DecodeError`` or ``ValidationError``); it becomes a ``DecodeError`` so it is a 400 like them.
    """
    try:
        return decoder.decode(body)
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
