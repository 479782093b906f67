"""An Anthropic Messages request as the chat request it is (``to_chat_request``).

``system`` becomes a system message; a user turn's ``tool_result`` blocks become tool messages (before
its text, as Anthropic requires them first); an assistant turn's ``tool_use`` blocks its tool calls.
Past ``thinking`` blocks are dropped, as chat templates drop past reasoning. ``tools`` become chat
tools, ``tool_choice`` ``any`` is ``required``, ``thinking`` and ``output_config.effort`` decide the
template's thinking switch, ``output_config.format`` a JSON schema response format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ...errors import InvalidRequestError, UnsupportedParameterError
from ...schemas import (
    AssistantMessage,
    ChatCompletionMessageParam,
    ChatCompletionMessageToolCall,
    ChatCompletionRequest,
    ChatCompletionTool,
    Function,
    FunctionDefinition,
    JSONSchema,
    NamedToolChoice,
    ResponseFormatJSONSchema,
    SystemMessage,
    ToolChoiceFunction,
    ToolMessage,
    UserMessage,
)
from .wire import (
    CountTokensRequest,
    DocumentBlockParam,
    ImageBlockParam,
    MessageCreateRequest,
    MessageParam,
    TextBlockParam,
    ThinkingConfigParam,
    ToolChoiceParam,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
)

_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh"}
"""Anthropic's ``output_config.effort`` as OpenAI's ``reasoning_effort``."""

_REFUSED = {
    "container": "code execution containers are not supported: they run on Anthropic's servers",
    "mcp_servers": "MCP servers are not supported: connect them in the client",
}


def to_chat_request(request: MessageCreateRequest | CountTokensRequest) -> ChatCompletionRequest:
    """The chat request a Messages request is (``count_tokens`` requests too: no sampling then)."""
    for name, reason in _REFUSED.items():
        if getattr(request, name, None):
            raise UnsupportedParameterError(reason, param=name)
    messages: list[ChatCompletionMessageParam] = []
    if request.system:
        messages.append(SystemMessage(content=_text(request.system)))
    for index, message in enumerate(request.messages):
        messages += _turn(index, message)
    tools = [_tool(index, tool) for index, tool in enumerate(request.tools or ())]
    creating = isinstance(request, MessageCreateRequest)
    output = request.output_config if creating else None
    return ChatCompletionRequest(
        messages=messages,
        model=request.model,
        max_tokens=request.max_tokens if creating else None,
        parallel_tool_calls=not (request.tool_choice and request.tool_choice.disable_parallel_tool_use),
        response_format=_response_format(output.format if output else None),
        stop=request.stop_sequences if creating else None,
        temperature=request.temperature if creating else None,
        tool_choice=_tool_choice(request.tool_choice),
        tools=tools or None,
        top_p=request.top_p if creating else None,
        top_k=request.top_k if creating else None,
        reasoning_effort=_EFFORTS.get(output.effort) if output and output.effort else None,
        chat_template_kwargs=_thinking(request.thinking),
    )


def _text(content: str | list[TextBlockParam]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(block.text for block in content)


def _turn(index: int, message: MessageParam) -> list[ChatCompletionMessageParam]:
    """One Anthropic turn as chat messages: tool results first (as tool messages), then the rest."""
    if message.role == "system":  # Claude Code's, for models it does not know: a system turn
        return [SystemMessage(content=_system_text(index, message))]
    if isinstance(message.content, str):
        text = message.content
        return [UserMessage(content=text) if message.role == "user" else AssistantMessage(content=text)]
    turn = _Turn()
    for number, block in enumerate(message.content):
        turn.add(block, message.role, f"messages[{index}].content[{number}]")
    text = "\n".join(turn.texts)
    if message.role == "assistant":
        return [AssistantMessage(content=text or None, tool_calls=turn.calls or None)]
    return [*turn.results, *([UserMessage(content=text)] if text or not turn.results else [])]


@dataclass
class _Turn:
    """What one turn's blocks become: its text, its tool calls (assistant) or tool results (user)."""

    texts: list[str] = field(default_factory=list)
    calls: list[ChatCompletionMessageToolCall] = field(default_factory=list)
    results: list[ChatCompletionMessageParam] = field(default_factory=list)

    def add(self, block: Any, role: str, where: str) -> None:
        if isinstance(block, ImageBlockParam | DocumentBlockParam):
            kind = "image" if isinstance(block, ImageBlockParam) else "document"
            raise UnsupportedParameterError(
                f"{where} is an {kind} block: OpenArc serves text models", param=where
            )
        if isinstance(block, TextBlockParam):
            self.texts.append(block.text)
        elif isinstance(block, ToolUseBlockParam):
            if role != "assistant":
                raise InvalidRequestError(f"{where}: tool_use blocks belong to assistant turns", param=where)
            function = Function(name=block.name, arguments=json.dumps(block.input, ensure_ascii=False))
            self.calls.append(ChatCompletionMessageToolCall(id=block.id, function=function))
        elif isinstance(block, ToolResultBlockParam):
            if role != "user":
                raise InvalidRequestError(f"{where}: tool_result blocks belong to user turns", param=where)
            content = block.content if isinstance(block.content, str) else _result_text(block, where)
            text = f"Error: {content}" if block.is_error else content
            self.results.append(ToolMessage(content=text, tool_call_id=block.tool_use_id))
        # Thinking blocks of past turns are dropped, as chat templates drop past reasoning.


def _system_text(index: int, message: MessageParam) -> str:
    if isinstance(message.content, str):
        return message.content
    if not all(isinstance(block, TextBlockParam) for block in message.content):
        where = f"messages[{index}].content"
        raise InvalidRequestError(f"{where}: a system turn may hold only text", param=where)
    return "\n".join(block.text for block in message.content if isinstance(block, TextBlockParam))


def _result_text(block: ToolResultBlockParam, where: str) -> str:
    parts = []
    for item in block.content:
        if not isinstance(item, TextBlockParam):
            raise UnsupportedParameterError(
                f"{where}: a tool result may hold only text here (OpenArc serves text models)", param=where
            )
        parts.append(item.text)
    return "\n".join(parts)


def _tool(index: int, tool: ToolParam) -> ChatCompletionTool:
    if tool.type not in (None, "custom"):
        raise UnsupportedParameterError(
            f"tools[{index}] has the type {tool.type!r}: OpenArc serves client tools only (Anthropic's "
            "server tools run on Anthropic's servers)",
            param=f"tools[{index}].type",
        )
    if not isinstance(tool.input_schema, dict):
        raise InvalidRequestError(
            f"tools[{index}].input_schema: Field required", param=f"tools[{index}].input_schema"
        )
    definition = FunctionDefinition(
        name=tool.name, description=tool.description, parameters=tool.input_schema
    )
    return ChatCompletionTool(type="function", function=definition)


def _tool_choice(choice: ToolChoiceParam | None) -> Any:
    if choice is None:
        return None
    if choice.type == "tool":
        if not choice.name:
            raise InvalidRequestError("tool_choice.name is required with type tool", param="tool_choice.name")
        return NamedToolChoice(type="function", function=ToolChoiceFunction(name=choice.name))
    if choice.type == "any":
        return "required"
    return choice.type  # "auto" or "none"


def _thinking(thinking: ThinkingConfigParam | None) -> dict[str, Any] | None:
    """``thinking`` as the chat template's switch (``enable_thinking``): enabled on, disabled off.
    Templates without the switch ignore it. A token budget is not enforced (openvino-genai has none)."""
    if thinking is None or thinking.type == "adaptive":
        return None
    return {"enable_thinking": thinking.type == "enabled"}


def _response_format(format_: Any) -> Any:
    if format_ is None:
        return None
    return ResponseFormatJSONSchema(json_schema=JSONSchema(name="output", schema=format_.schema))
