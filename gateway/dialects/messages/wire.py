"""Anthropic's Messages API on the wire (``/v1/messages``): msgspec Structs named as in its SDK.

Requests skip unknown fields, as OpenArc's other request types do; content blocks are a tagged union
on ``type``, so an unknown block type is a 400 naming it. Reference:
https://docs.anthropic.com/en/api/messages
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from ...schemas import MAX_INT32, MaxTokens, TopK, TopP, decode_request


class Wire(Struct, kw_only=True, omit_defaults=False):
    """Base of the Messages wire types (``kw_only`` is not inherited, so each subclass repeats it)."""


# --- request ---------------------------------------------------------------------------------------------


class TextBlockParam(Wire, kw_only=True, tag_field="type", tag="text"):
    text: str
    cache_control: dict[str, Any] | None = None
    """Anthropic's explicit cache breakpoints: accepted; OpenArc's prefix cache needs none."""


class ImageBlockParam(Wire, kw_only=True, tag_field="type", tag="image"):
    """Decoded so that it can be refused by name: OpenArc serves text models."""

    source: dict[str, Any] | None = None


class DocumentBlockParam(Wire, kw_only=True, tag_field="type", tag="document"):
    """Decoded so that it can be refused by name."""

    source: dict[str, Any] | None = None


class ToolUseBlockParam(Wire, kw_only=True, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]
    cache_control: dict[str, Any] | None = None


class ToolResultBlockParam(Wire, kw_only=True, tag_field="type", tag="tool_result"):
    tool_use_id: str
    content: str | list[TextBlockParam | ImageBlockParam | DocumentBlockParam] = ""
    is_error: bool = False
    cache_control: dict[str, Any] | None = None


class ThinkingBlockParam(Wire, kw_only=True, tag_field="type", tag="thinking"):
    thinking: str
    signature: str = ""


class RedactedThinkingBlockParam(Wire, kw_only=True, tag_field="type", tag="redacted_thinking"):
    data: str


ContentBlockParam = (
    TextBlockParam
    | ImageBlockParam
    | DocumentBlockParam
    | ToolUseBlockParam
    | ToolResultBlockParam
    | ThinkingBlockParam
    | RedactedThinkingBlockParam
)


class MessageParam(Wire, kw_only=True):
    role: Literal["user", "assistant", "system"]
    """``system`` is not Anthropic's, but Claude Code sends such turns to models it does not know."""
    content: str | list[ContentBlockParam]


class ToolParam(Wire, kw_only=True):
    """A client tool; Anthropic's server tools (``web_search_...``, ``bash_...``) have other types."""

    name: str
    input_schema: dict[str, Any] | UnsetType = UNSET
    description: str | UnsetType = UNSET
    type: str | None = None
    cache_control: dict[str, Any] | None = None
    strict: bool | None = None


class ToolChoiceParam(Wire, kw_only=True):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class ThinkingConfigParam(Wire, kw_only=True):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: Annotated[int, Meta(ge=0, le=MAX_INT32)] | None = None
    display: str | None = None


class JSONOutputFormat(Wire, kw_only=True):
    type: Literal["json_schema"]
    schema: dict[str, Any]


class OutputConfigParam(Wire, kw_only=True):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: JSONOutputFormat | None = None


class MessageCreateRequest(Wire, kw_only=True):
    """``POST /v1/messages`` body, in the reference's order, then what OpenArc adds."""

    model: str
    max_tokens: MaxTokens
    messages: Annotated[list[MessageParam], Meta(min_length=1)]
    system: str | list[TextBlockParam] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] | None = None
    top_p: TopP | None = None
    top_k: TopK | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    thinking: ThinkingConfigParam | None = None
    output_config: OutputConfigParam | None = None
    # Accepted and ignored: they do not change what the model generates here.
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None
    cache_control: dict[str, Any] | None = None
    inference_geo: str | None = None
    # Refused when set: ignoring them would change the answer silently.
    container: Any = None
    mcp_servers: list[Any] | None = None


class CountTokensRequest(Wire, kw_only=True):
    """``POST /v1/messages/count_tokens``: what a message would be, without generating."""

    model: str
    messages: Annotated[list[MessageParam], Meta(min_length=1)]
    system: str | list[TextBlockParam] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    thinking: ThinkingConfigParam | None = None


# --- response -----------------------------------------------------------------------------------------


class TextBlock(Wire, kw_only=True, tag_field="type", tag="text"):
    text: str


class ToolUseBlock(Wire, kw_only=True, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any] | Any


class ThinkingBlock(Wire, kw_only=True, tag_field="type", tag="thinking"):
    thinking: str
    signature: str = ""


ContentBlock = TextBlock | ToolUseBlock | ThinkingBlock

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class Usage(Wire, kw_only=True):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


class Message(Wire, kw_only=True):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ContentBlock]
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: Usage


class MessageTokensCount(Wire, kw_only=True):
    input_tokens: int


class AnthropicErrorDetail(Wire, kw_only=True):
    type: str
    message: str


class AnthropicErrorResponse(Wire, kw_only=True):
    """Anthropic's error body: ``{"type": "error", "error": {"type", "message"}}``."""

    type: Literal["error"] = "error"
    error: AnthropicErrorDetail


_request_decoder = msgspec.json.Decoder(MessageCreateRequest)
_count_decoder = msgspec.json.Decoder(CountTokensRequest)


def decode_message_request(body: bytes) -> MessageCreateRequest:
    """Strict decoding, as chat's: a wrongly typed or missing field is a 400 naming it."""
    return decode_request(_request_decoder, body)


def decode_count_request(body: bytes) -> CountTokensRequest:
    """Strict decoding of a ``count_tokens`` body, as ``decode_message_request``'s."""
    return decode_request(_count_decoder, body)
