"""A request's output constraint in openvino-genai's terms: lowered once in the preparer, built in the
engine (preparer and engine processes).

``lower`` does the work that costs something (parsing each JSON schema and turning it into a grammar)
and yields a ``channel.StructuredOutput``: plain data naming exactly the openvino-genai objects to
build. The preparer checks it on the grammar probe and sends it with ``Prepared``; ``build`` then makes
the ``StructuredOutputConfig`` from it with no parsing at all.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import openvino_genai as ov_genai

from ...base import AnyOfConstraint, Constraint, JsonConstraint, TaggedCallsConstraint
from ...channel import (
    EBNF,
    Concat,
    ConstString,
    JSONSchema,
    StructuralTag,
    StructuredOutput,
    Tag,
    TagsWithSeparator,
    Union,
)
from ...json_grammar import json_schema_to_ebnf


def lower(constraint: Constraint) -> StructuredOutput:
    """What openvino-genai must enforce for ``constraint`` (xgrammar compiles it when the request starts).

    JSON schemas go as OpenArc's own compact grammar where it can express them (``json_grammar``):
    xgrammar's converter lets the model write any whitespace between JSON tokens, and small models fill
    it with newlines until ``max_tokens`` (measured on the demo model: 7 failures in 8 with the schema
    path, none with the grammar). Schemas it cannot express go to xgrammar's converter as they are.
    """
    if isinstance(constraint, JsonConstraint) and not constraint.prefix:
        ebnf = compact_grammar(constraint.schema)
        if ebnf is not None:
            return StructuredOutput(grammar=ebnf)
        return StructuredOutput(json_schema=constraint.schema)
    if isinstance(constraint, TaggedCallsConstraint):
        tags = TagsWithSeparator(_tags(constraint), constraint.separator, True, constraint.single)
        return StructuredOutput(structural_tags=tags)
    if isinstance(constraint, AnyOfConstraint):
        # xgrammar takes a union only of elements that all end (or all repeat): each option is one item.
        return StructuredOutput(structural_tags=Union(tuple(_one_item(o) for o in constraint.options)))
    return StructuredOutput(structural_tags=_one_item(constraint))


def _one_item(constraint: JsonConstraint | TaggedCallsConstraint) -> StructuralTag:
    """A structural-tag element producing exactly one JSON document or one tagged call."""
    if isinstance(constraint, JsonConstraint):
        schema = _json_element(constraint.schema)
        return Concat((ConstString(constraint.prefix), schema)) if constraint.prefix else schema
    tags = _tags(constraint)
    return tags[0] if len(tags) == 1 else Union(tags)


def _tags(constraint: TaggedCallsConstraint) -> tuple[Tag, ...]:
    return tuple(Tag(call.begin, _json_element(call.schema), call.end) for call in constraint.calls)


def _json_element(schema: str) -> EBNF | JSONSchema:
    ebnf = compact_grammar(schema)
    return EBNF(ebnf) if ebnf is not None else JSONSchema(schema)


@functools.lru_cache(maxsize=256)
def compact_grammar(schema: str) -> str | None:
    """The compact EBNF grammar for a JSON schema's text, or ``None`` (remembered: agents repeat schemas)."""
    try:
        return json_schema_to_ebnf(json.loads(schema))
    except ValueError:
        return None


def build(description: StructuredOutput) -> Any:
    """The ``StructuredOutputConfig`` that ``description`` names.

    One object may go to every choice of a request (checked on openvino-genai 2026.4.1): assigning it to
    a ``GenerationConfig`` copies it, and the structural-tag elements the copies still share are only
    read, through const references, when the pipeline compiles each request's grammar.
    """
    so = ov_genai.StructuredOutputConfig
    if description.grammar is not None:
        return so(grammar=description.grammar)
    if description.json_schema is not None:
        return so(json_schema=description.json_schema)
    return so(structural_tags_config=_build_element(description.structural_tags))


def _build_element(element: StructuralTag | None) -> Any:
    so = ov_genai.StructuredOutputConfig
    match element:
        case EBNF(grammar):
            return so.EBNF(grammar)
        case JSONSchema(schema):
            return so.JSONSchema(schema)
        case ConstString(text):
            return so.ConstString(text)
        case Concat(elements):
            return so.Concat(*[_build_element(e) for e in elements])
        case Union(elements):
            return so.Union(*[_build_element(e) for e in elements])
        case Tag(begin, content, end):
            return so.Tag(begin, _build_element(content), end)
        case TagsWithSeparator(tags, separator, at_least_one, stop_after_first):
            built = [_build_element(tag) for tag in tags]
            return so.TagsWithSeparator(built, separator, at_least_one, stop_after_first)
    raise ValueError(f"not a structural tag: {element!r}")
