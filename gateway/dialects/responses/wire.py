"""OpenAI's Responses API on the wire (``/v1/responses``): msgspec Structs, named as in the official SDK.

Requests skip unknown fields, as the chat types do. ``input`` items are decoded one by one
(``decode_input_item``) because OpenAI lets a message item leave out its ``type``, which a tagged union
cannot. Reference: https://platform.openai.com/docs/api-reference/responses
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from ...errors import InvalidRequestError
from ...schemas import (
    MaxTokens,
    MinP,
    RepetitionPenalty,
    Seed,
    Temperature,
    TopK,
    TopLogprobs,
    TopP,
    decode_request,
)


class Wire(Struct, kw_only=True, omit_defaults=False):
    """Base of the Responses wire types (``kw_only`` is not inherited, so each subclass repeats it)."""


# --- request: input items -----------------------------------------------------------------------------


class InputText(Wire, kw_only=True, tag_field="type", tag="input_text"):
    text: str


class OutputText(Wire, kw_only=True, tag_field="type", tag="output_text"):
    text: str
    annotations: list[Any] = msgspec.field(default_factory=list)
    logprobs: list[Any] | UnsetType = UNSET


class Refusal(Wire, kw_only=True, tag_field="type", tag="refusal"):
    refusal: str


class InputImage(Wire, kw_only=True, tag_field="type", tag="input_image"):
    """Decoded so that it can be refused by name: OpenArc serves text models."""

    image_url: str | None = None


class InputFile(Wire, kw_only=True, tag_field="type", tag="input_file"):
    """Decoded so that it can be refused by name."""

    filename: str | None = None


ContentPart = InputText | OutputText | Refusal | InputImage | InputFile


class MessageItem(Wire, kw_only=True, tag_field="type", tag="message"):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | UnsetType = UNSET
    status: str | UnsetType = UNSET


class FunctionCallItem(Wire, kw_only=True, tag_field="type", tag="function_call"):
    call_id: str
    name: str
    arguments: str
    id: str | UnsetType = UNSET
    status: str | UnsetType = UNSET


class FunctionCallOutputItem(Wire, kw_only=True, tag_field="type", tag="function_call_output"):
    call_id: str
    output: str | list[ContentPart]
    id: str | UnsetType = UNSET
    status: str | UnsetType = UNSET


class SummaryText(Wire, kw_only=True, tag_field="type", tag="summary_text"):
    text: str


class ReasoningText(Wire, kw_only=True, tag_field="type", tag="reasoning_text"):
    text: str


class ReasoningItem(Wire, kw_only=True, tag_field="type", tag="reasoning"):
    id: str | UnsetType = UNSET
    summary: list[SummaryText] = msgspec.field(default_factory=list)
    content: list[ReasoningText] | None | UnsetType = UNSET
    encrypted_content: str | None | UnsetType = UNSET
    status: str | UnsetType = UNSET


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem
INPUT_ITEM_TYPES: dict[str, type[InputItem]] = {
    "message": MessageItem,
    "function_call": FunctionCallItem,
    "function_call_output": FunctionCallOutputItem,
    "reasoning": ReasoningItem,
}


def decode_input_item(index: int, raw: Any) -> InputItem:
    """One ``input`` item: a message may leave out its ``type`` (OpenAI's "easy input message")."""
    if not isinstance(raw, dict):
        raise InvalidRequestError(f"input[{index}] must be an object", param=f"input[{index}]")
    kind = raw.get("type", "message" if "role" in raw else None)
    item_type = INPUT_ITEM_TYPES.get(kind) if isinstance(kind, str) else None
    if item_type is None:
        raise InvalidRequestError(
            f"input[{index}] has the item type {kind!r}, which OpenArc does not serve (it serves "
            f"{', '.join(INPUT_ITEM_TYPES)})",
            param=f"input[{index}].type",
        )
    try:
        return msgspec.convert({**raw, "type": kind}, item_type)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$")
        where = f"input[{index}]{path.rstrip('`')}"
        raise InvalidRequestError(f"{message} - at `{where}`", param=where) from None


# --- request: tools, formats, the body ------------------------------------------------------------------


class FunctionTool(Wire, kw_only=True):
    """A function tool, flat as the Responses API writes it (chat nests it under ``function``), or a
    ``namespace`` of them (Codex groups its sub-agent tools so)."""

    type: str
    name: str | UnsetType = UNSET
    description: str | None | UnsetType = UNSET
    parameters: dict[str, Any] | None | UnsetType = UNSET
    strict: bool | None | UnsetType = UNSET
    tools: list[FunctionTool] | UnsetType = UNSET
    """A namespace's functions."""


class FunctionToolChoice(Wire, kw_only=True):
    type: str
    name: str | UnsetType = UNSET


ToolChoice = Literal["none", "auto", "required"] | FunctionToolChoice


class TextFormat(Wire, kw_only=True):
    type: Literal["text", "json_object", "json_schema"]
    name: str | UnsetType = UNSET
    schema: dict[str, Any] | None | UnsetType = UNSET
    description: str | None | UnsetType = UNSET
    strict: bool | None | UnsetType = UNSET


class TextConfig(Wire, kw_only=True):
    format: TextFormat | None = None
    verbosity: str | None = None


class ReasoningConfig(Wire, kw_only=True):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = None
    generate_summary: str | None = None


class ResponseCreateRequest(Wire, kw_only=True):
    """``POST /v1/responses`` body, in OpenAI reference order, then OpenArc extensions."""

    model: str
    input: str | Annotated[list[Any], Meta(min_length=1)]
    instructions: str | None = None
    max_output_tokens: MaxTokens | None = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    reasoning: ReasoningConfig | None = None
    store: bool | None = None
    stream: bool = False
    temperature: Temperature | None = None
    text: TextConfig | None = None
    tool_choice: ToolChoice | None = None
    tools: list[FunctionTool] | None = None
    top_p: TopP | None = None
    # Accepted and ignored: they do not change what the model generates here.
    metadata: dict[str, str] | None = None
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    user: str | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    max_tool_calls: int | None = None
    """Caps OpenAI's built-in tools, which OpenArc has none of."""
    stream_options: dict[str, Any] | None = None
    # Refused when set (400 unsupported_parameter): ignoring them would change the answer silently.
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    top_logprobs: TopLogprobs | None = None
    # OpenArc extensions, as in chat completions.
    top_k: TopK | None = None
    min_p: MinP | None = None
    repetition_penalty: RepetitionPenalty | None = None
    seed: Seed | None = None


# --- response ------------------------------------------------------------------------------------------


class ResponseOutputText(Wire, kw_only=True):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = msgspec.field(default_factory=list)
    logprobs: list[Any] = msgspec.field(default_factory=list)


class ResponseOutputMessage(Wire, kw_only=True, tag_field="type", tag="message"):
    id: str
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"]
    content: list[ResponseOutputText]


class ResponseFunctionToolCall(Wire, kw_only=True, tag_field="type", tag="function_call"):
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"]
    namespace: str | UnsetType = UNSET
    """The namespace tool the function came in, when it came in one."""


class ResponseReasoningText(Wire, kw_only=True):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class ResponseReasoningItem(Wire, kw_only=True, tag_field="type", tag="reasoning"):
    """The model's think block, as open-weight models' reasoning is shown: as ``content`` (no summary)."""

    id: str
    summary: list[Any] = msgspec.field(default_factory=list)
    content: list[ResponseReasoningText]
    status: Literal["in_progress", "completed", "incomplete"]


OutputItem = ResponseOutputMessage | ResponseFunctionToolCall | ResponseReasoningItem


class InputTokensDetails(Wire, kw_only=True):
    cached_tokens: int = 0


class OutputTokensDetails(Wire, kw_only=True):
    reasoning_tokens: int = 0


class ResponseUsage(Wire, kw_only=True):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class IncompleteDetails(Wire, kw_only=True):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseError(Wire, kw_only=True):
    code: str
    message: str


class Response(Wire, kw_only=True):
    """A response: ``status`` ``in_progress`` while streaming, then ``completed`` or ``incomplete``."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: str | None = None
    reasoning: ReasoningConfig | None = None
    store: bool
    temperature: float | None = None
    text: TextConfig
    tool_choice: ToolChoice
    tools: list[FunctionTool]
    top_p: float | None = None
    truncation: Literal["auto", "disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


class ResponseDeleted(Wire, kw_only=True):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


class ResponseInputItemList(Wire, kw_only=True):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool = False


_request_decoder = msgspec.json.Decoder(ResponseCreateRequest)


def decode_response_request(body: bytes) -> ResponseCreateRequest:
    """Strict decoding, as chat's (``schemas.decode_request``): a wrongly typed field is a 400 naming it."""
    return decode_request(_request_decoder, body)
