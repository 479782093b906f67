"""What a chat request asks of its output: tool calls to parse or to force, JSON to enforce.

The rules follow OpenAI's API; where it is silent they follow vLLM:
- ``tool_choice`` defaults to ``auto`` with tools and ``none`` without. ``none`` still shows the tools to
  the chat template (the model knows them but its output is not parsed), as vLLM does by default.
- ``auto`` parses the model's own tool-call syntax (found from its chat template, or set per model):
  calls the model writes become ``tool_calls``, anything else stays content.
- ``required`` and a named function constrain generation to valid calls in that same syntax (``hermes``
  for a model that has none), so the result is always a call whose arguments match the schema.
- ``response_format`` ``json_object``/``json_schema`` constrain the content to JSON; with tools under
  ``auto``, to either that JSON or one call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec

from adapters.base import AnyOfConstraint, Constraint, JsonConstraint, OutputFormat
from adapters.output_parsing import DEFAULT_FORCED_FORMAT, forced_call_constraint

from .errors import InvalidRequestError
from .schemas import (
    ChatCompletionRequest,
    NamedToolChoice,
    ResponseFormatJSONObject,
    ResponseFormatJSONSchema,
)

TEMPLATE_KWARGS: dict[str, type] = {"enable_thinking": bool, "thinking": bool, "reasoning_effort": str}
"""``chat_template_kwargs`` a client may set, with their types. Anything else is refused: the template
is code, and arbitrary variables could change what it renders in ways nobody reviewed."""


@dataclass(frozen=True)
class OutputPlan:
    """What ``plan_output`` decided: the tools to show the template, the call syntax to parse, the
    constraint to enforce."""

    tools: tuple[dict[str, Any], ...] = ()
    """Tool definitions for the chat template."""
    tool_format: str | None = None
    """The call syntax to parse out of the output; ``None``: none."""
    constraint: Constraint | None = None
    constraint_param: str = "response_format"
    template_kwargs: dict[str, Any] | None = None


def plan_output(request: ChatCompletionRequest, output_format: OutputFormat) -> OutputPlan:
    """Check the request's tool and format fields against each other and decide what to parse and force."""
    tools = tuple(msgspec.to_builtins(tool) for tool in request.tools or ())
    choice = request.tool_choice or ("auto" if tools else "none")
    forced_name = choice.function.name if isinstance(choice, NamedToolChoice) else None
    forced = choice == "required" or forced_name is not None
    if forced and not tools:  # "auto" or "none" without tools are harmless, and some clients send them
        raise InvalidRequestError(
            "tool_choice forces a call, but no tools are specified", param="tool_choice"
        )
    names = [tool["function"]["name"] for tool in tools]
    if forced_name is not None and forced_name not in names:
        raise InvalidRequestError(
            f"tool_choice names the function {forced_name!r}, which is not among the tools",
            param="tool_choice",
        )
    json_constraint = _json_constraint(request)
    kwargs = _template_kwargs(request.chat_template_kwargs)
    if json_constraint is not None:
        if forced:
            raise InvalidRequestError(
                "response_format cannot be combined with a tool_choice that forces a call",
                param="response_format",
            )
        syntax = output_format.tool_format
        if choice == "auto" and syntax is not None:
            # The model answers in the schema or calls one tool (as agents with a typed final output
            # expect); a model with no call syntax can only answer.
            calls = forced_call_constraint(syntax, list(tools), None, False)
            either = AnyOfConstraint((json_constraint, calls))
            return OutputPlan(tools, syntax, either, "response_format", kwargs)
        return OutputPlan(tools, None, json_constraint, "response_format", kwargs)
    if forced:
        syntax = output_format.tool_format or DEFAULT_FORCED_FORMAT
        # A named function is called once, as OpenAI does; "required" may call several when allowed.
        parallel = request.parallel_tool_calls and forced_name is None
        constraint = forced_call_constraint(syntax, list(tools), forced_name, parallel)
        return OutputPlan(tools, syntax, constraint, "tools", kwargs)
    if choice == "auto":
        return OutputPlan(tools, output_format.tool_format, None, "response_format", kwargs)
    return OutputPlan(tools, None, None, "response_format", kwargs)


def _json_constraint(request: ChatCompletionRequest) -> JsonConstraint | None:
    response_format = request.response_format
    if isinstance(response_format, ResponseFormatJSONObject):
        return JsonConstraint(json.dumps({"type": "object"}))
    if isinstance(response_format, ResponseFormatJSONSchema):
        schema = response_format.json_schema.schema
        return JsonConstraint(json.dumps({} if schema is None else schema, ensure_ascii=False))
    return None


def _template_kwargs(kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
    for key, value in (kwargs or {}).items():
        expected = TEMPLATE_KWARGS.get(key)
        if expected is None:
            allowed = ", ".join(sorted(TEMPLATE_KWARGS))
            raise InvalidRequestError(
                f"chat_template_kwargs.{key} is not allowed (allowed: {allowed})",
                param=f"chat_template_kwargs.{key}",
            )
        if not isinstance(value, expected):
            raise InvalidRequestError(
                f"chat_template_kwargs.{key} must be a {expected.__name__}",
                param=f"chat_template_kwargs.{key}",
            )
    return kwargs or None
