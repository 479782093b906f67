"""Forcing tool calls: the grammar that makes the output call a tool in the model's own syntax."""

from __future__ import annotations

import json
from typing import Any

from ..base import Constraint, JsonConstraint, TaggedCall, TaggedCallsConstraint

DEFAULT_FORCED_FORMAT = "hermes"
"""The call syntax forced on a model whose template has none of its own."""

_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _call_schema(name: str, key: str, parameters: dict[str, Any]) -> dict[str, Any]:
    # No extra keys: the parser reads an unknown key before the call starts as "not a call".
    return {
        "type": "object",
        "properties": {"name": {"const": name}, key: parameters},
        "required": ["name", key],
        "additionalProperties": False,
    }


def _hermes_constraint(functions: list[tuple[str, dict[str, Any]]], parallel: bool) -> Constraint:
    calls = tuple(
        TaggedCall(
            begin='<tool_call>\n{"name": ' + _dumps(name) + ', "arguments": ',
            schema=_dumps(parameters),
            end="}\n</tool_call>",
        )
        for name, parameters in functions
    )
    return TaggedCallsConstraint(calls=calls, separator="\n", single=not parallel)


def _llama3_constraint(functions: list[tuple[str, dict[str, Any]]], parallel: bool) -> Constraint:
    # One JSON document: Llama 3 joins parallel calls with ";", which a JSON grammar cannot express.
    schema = {"anyOf": [_call_schema(name, "parameters", params) for name, params in functions]}
    return JsonConstraint(schema=_dumps(schema))


def _mistral_constraint(functions: list[tuple[str, dict[str, Any]]], parallel: bool) -> Constraint:
    # A JSON array rather than tagged calls: the engine's grammar library refuses anything (the closing
    # "]") after an unlimited sequence of tagged items.
    schema: dict[str, Any] = {
        "type": "array",
        "items": {"anyOf": [_call_schema(name, "arguments", params) for name, params in functions]},
        "minItems": 1,
    }
    if not parallel:
        schema["maxItems"] = 1
    return JsonConstraint(schema=_dumps(schema), prefix="[TOOL_CALLS]")


_CONSTRAINTS = {
    "hermes": _hermes_constraint,
    "llama3_json": _llama3_constraint,
    "mistral": _mistral_constraint,
}


def forced_call_constraint(
    tool_format: str | None, tools: list[dict[str, Any]], name: str | None, parallel: bool
) -> Constraint:
    """The grammar that makes the output tool call(s) in the model's own syntax, which
    ``OutputParser`` then reads back.

    Args:
        tool_format: the model's tool syntax; None falls back to ``DEFAULT_FORCED_FORMAT``.
        tools: OpenAI tool definitions (``{"type": "function", "function": {...}}``).
        name: the one function to call (tool_choice naming a function), or None for any of ``tools``
            (tool_choice "required").
        parallel: False allows exactly one call.

    Raises:
        ValueError: no function to call (``name`` is not among ``tools``), or an unknown tool format.
    """
    build = _CONSTRAINTS.get(tool_format or DEFAULT_FORCED_FORMAT)
    if build is None:
        raise ValueError(f"unknown tool call format {tool_format!r}")
    functions = [
        (tool["function"]["name"], tool["function"].get("parameters") or _NO_PARAMETERS)
        for tool in tools
        if tool.get("type", "function") == "function"
        and (name is None or tool["function"].get("name") == name)
    ]
    if not functions:
        raise ValueError(f"no function {name!r} among the tools" if name else "no functions among the tools")
    return build(functions, parallel)
