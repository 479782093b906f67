"""A Responses API request as the chat request it is (``to_chat_request``).

A request becomes a ``ChatCompletionRequest`` (``to_chat_request``): ``instructions`` a system message,
input items messages, function calls and their outputs the assistant and tool turns a chat template
knows, function tools chat tools, ``text.format`` a ``response_format``; then ``chat.to_params`` decides
tools, forced calls, structured outputs and sampling, as for any chat. The generation's events become
the Responses API's typed events (``ResponseEvents``), and the non-streaming response is what the same
events built, so both modes answer alike. A stored response keeps the whole conversation, so that
``previous_response_id`` continues it without the client resending anything (``conversation``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ...errors import InvalidRequestError, UnsupportedParameterError
from ...schemas import (
    AssistantMessage,
    ChatCompletionMessageParam,
    ChatCompletionMessageToolCall,
    ChatCompletionRequest,
    ChatCompletionTool,
    ContentPart,
    DeveloperMessage,
    Function,
    FunctionDefinition,
    JSONSchema,
    NamedToolChoice,
    ResponseFormatJSONObject,
    ResponseFormatJSONSchema,
    SystemMessage,
    ToolChoiceFunction,
    ToolMessage,
    UserMessage,
)
from .wire import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    InputFile,
    InputImage,
    InputItem,
    InputText,
    MessageItem,
    OutputText,
    ReasoningItem,
    Refusal,
    ResponseCreateRequest,
    TextConfig,
    decode_input_item,
)

IGNORED_TOOL_TYPES = frozenset({"web_search", "web_search_preview", "tool_search"})
"""Tool types dropped rather than refused: Codex sends them with every request, whatever the model
(README, "What the agent tools send"). web_search runs on OpenAI's servers and a local model cannot;
tool_search only finds more of Codex's deferred tools. Every other type but ``function`` and
``namespace`` is a 400 naming it."""

_REFUSED = {
    "background": "background responses are not supported: OpenArc answers while the request is open",
    "conversation": "conversation objects are not supported: continue with previous_response_id",
    "prompt": "stored prompt templates are not supported: send the input itself",
}

Conversation = list[ChatCompletionMessageParam]
_conversation_decoder = msgspec.json.Decoder(Conversation)


def decode_conversation(data: bytes) -> Conversation:
    """A stored response's conversation, as ``to_chat_request`` continues it."""
    return _conversation_decoder.decode(data)


def input_items(request: ResponseCreateRequest) -> list[InputItem]:
    """The request's ``input`` as items (a string is one user message)."""
    if isinstance(request.input, str):
        return [MessageItem(role="user", content=request.input)]
    return [decode_input_item(index, raw) for index, raw in enumerate(request.input)]


def to_chat_request(
    request: ResponseCreateRequest, items: list[InputItem], history: Conversation
) -> ChatCompletionRequest:
    """The chat request this response is, after ``history`` (the previous response's conversation)."""
    for name, reason in _REFUSED.items():
        if getattr(request, name):
            raise UnsupportedParameterError(reason, param=name)
    if request.top_logprobs:
        raise UnsupportedParameterError(
            "top_logprobs is not supported: openvino-genai reports only the chosen token",
            param="top_logprobs",
        )
    messages: Conversation = []
    if request.instructions:  # not carried over from a previous response, as OpenAI does
        messages.append(SystemMessage(content=request.instructions))
    messages += _history_without_instructions(history)
    messages += _messages(items, _call_ids(history))
    tools = _tools(request.tools or [])
    effort = request.reasoning.effort if request.reasoning else None
    return ChatCompletionRequest(
        messages=messages,
        model=request.model,
        max_completion_tokens=request.max_output_tokens,
        parallel_tool_calls=True if request.parallel_tool_calls is None else request.parallel_tool_calls,
        response_format=_response_format(request.text),
        seed=request.seed,
        temperature=request.temperature,
        tool_choice=_tool_choice(request.tool_choice),
        tools=tools or None,
        top_p=request.top_p,
        reasoning_effort=effort,
        top_k=request.top_k,
        min_p=request.min_p,
        repetition_penalty=request.repetition_penalty,
    )


def _history_without_instructions(history: Conversation) -> Conversation:
    """The previous conversation without its leading system message: each response has its own
    ``instructions`` (OpenAI: "instructions from a previous response will not be carried over")."""
    return history[1:] if history and isinstance(history[0], SystemMessage) else history


def _call_ids(history: Conversation) -> set[str]:
    return {
        call.id
        for message in history
        if isinstance(message, AssistantMessage)
        for call in message.tool_calls or ()
    }


def _messages(items: list[InputItem], known_calls: set[str]) -> Conversation:
    """Input items as chat messages: consecutive function calls join one assistant turn (as chat
    templates render parallel calls); reasoning items are dropped (templates drop past thinking)."""
    messages: Conversation = []
    for index, item in enumerate(items):
        if isinstance(item, MessageItem):
            messages.append(_message(index, item))
        elif isinstance(item, FunctionCallItem):
            call = ChatCompletionMessageToolCall(
                id=item.call_id, function=Function(name=item.name, arguments=item.arguments)
            )
            known_calls.add(item.call_id)
            last = messages[-1] if messages else None
            if isinstance(last, AssistantMessage) and (last.tool_calls or not last.content):
                last.tool_calls = [*(last.tool_calls or []), call]
            else:
                messages.append(AssistantMessage(tool_calls=[call]))
        elif isinstance(item, FunctionCallOutputItem):
            if item.call_id not in known_calls:
                raise InvalidRequestError(
                    f"No tool call found for function call output with call_id {item.call_id}.",
                    param=f"input[{index}].call_id",
                )
            messages.append(ToolMessage(content=_text(index, item.output), tool_call_id=item.call_id))
        elif not isinstance(item, ReasoningItem):  # pragma: no cover - decode_input_item allows no other
            raise InvalidRequestError(f"input[{index}] cannot be served", param=f"input[{index}]")
    if not messages:
        raise InvalidRequestError("input holds no message to answer", param="input")
    return messages


def _message(index: int, item: MessageItem) -> ChatCompletionMessageParam:
    text = _text(index, item.content)
    if item.role == "assistant":
        return AssistantMessage(content=text)
    if item.role == "system":
        return SystemMessage(content=text)
    if item.role == "developer":
        return DeveloperMessage(content=text)
    return UserMessage(content=text)


def _text(index: int, content: str | list[Any]) -> str | list[ContentPart]:
    """A message's text; images and files are refused by name (OpenArc serves text models)."""
    if isinstance(content, str):
        return content
    parts = []
    for number, part in enumerate(content):
        if isinstance(part, InputImage | InputFile):
            kind = "input_image" if isinstance(part, InputImage) else "input_file"
            raise UnsupportedParameterError(
                f"{kind} content is not supported: OpenArc serves text models",
                param=f"input[{index}].content[{number}]",
            )
        if isinstance(part, InputText | OutputText):
            parts.append(ContentPart(text=part.text))
        elif isinstance(part, Refusal):
            parts.append(ContentPart(text=part.refusal))
    return parts


def namespaces(tools: list[FunctionTool] | None) -> dict[str, str]:
    """Each namespaced function's namespace, for the calls made to it."""
    found = {}
    for tool in tools or ():
        if tool.type == "namespace" and isinstance(tool.name, str):
            found.update({inner.name: tool.name for inner in tool.tools or () if isinstance(inner.name, str)})
    return found


def _tools(tools: list[FunctionTool]) -> list[ChatCompletionTool]:
    """Function tools as chat tools; a namespace's functions join them (the chat template sees them all)."""
    flat: list[tuple[str, FunctionTool]] = []
    for index, tool in enumerate(tools):
        if tool.type == "namespace":
            flat += [
                (f"tools[{index}].tools[{number}]", inner) for number, inner in enumerate(tool.tools or ())
            ]
        else:
            flat.append((f"tools[{index}]", tool))
    chat_tools = []
    for where, tool in flat:
        if tool.type in IGNORED_TOOL_TYPES:
            continue
        if tool.type != "function":
            raise UnsupportedParameterError(
                f"{where} has the type {tool.type!r}: OpenArc serves function tools (and namespaces of "
                "them) only",
                param=f"{where}.type",
            )
        if not isinstance(tool.name, str):
            raise InvalidRequestError(f"{where}.name is required", param=f"{where}.name")
        definition = FunctionDefinition(
            name=tool.name, description=tool.description, parameters=tool.parameters, strict=tool.strict
        )
        chat_tools.append(ChatCompletionTool(type="function", function=definition))
    return chat_tools


def _tool_choice(choice: Any) -> Any:
    if choice is None or isinstance(choice, str):
        return choice
    if choice.type != "function" or not isinstance(choice.name, str):
        raise UnsupportedParameterError(
            f"tool_choice of type {choice.type!r} is not supported (none, auto, required or a function)",
            param="tool_choice",
        )
    return NamedToolChoice(type="function", function=ToolChoiceFunction(name=choice.name))


def _response_format(text: TextConfig | None) -> Any:
    fmt = text.format if text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return ResponseFormatJSONObject()
    name = fmt.name if isinstance(fmt.name, str) else "response"
    schema = fmt.schema if isinstance(fmt.schema, dict) else None
    description = fmt.description if isinstance(fmt.description, str) else None
    strict = fmt.strict if isinstance(fmt.strict, bool) else None
    return ResponseFormatJSONSchema(
        json_schema=JSONSchema(name=name, description=description, schema=schema, strict=strict)
    )
