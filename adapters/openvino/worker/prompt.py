"""A request's prompt and generation settings in openvino-genai's terms (engine and preparer processes)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import openvino as ov
import openvino_genai as ov_genai

from ...base import (
    AnyOfConstraint,
    ChatMessage,
    Constraint,
    GenerationParams,
    InvalidConversationError,
    InvalidParametersError,
    JsonConstraint,
    PromptTooLongError,
    TaggedCallsConstraint,
    first_line,
)
from ...json_grammar import json_schema_to_ebnf

FALLBACK_MAX_TOKENS = 4096
"""Completion budget when a model's context length is unknown and the request sets no max_tokens."""


@dataclass(frozen=True)
class PreparedPrompt:
    ids: list[int]
    budget: int
    """Tokens the completion may take."""
    text: str
    """The prompt as rendered (what the reasoning check reads)."""


def prepare_prompt(tokenizer: Any, params: GenerationParams, context_length: int | None) -> PreparedPrompt:
    """Template and tokenize a request's chat (or take its raw prompt), check the context window and the
    sampling settings.

    Raises ``PromptTooLongError``, ``InvalidConversationError`` when the template or the tokenizer fails
    on these messages, or ``InvalidParametersError`` when openvino-genai refuses the generation config.
    """
    try:
        if params.prompt is not None:
            text = params.prompt
            ids = tokenizer.encode(text, add_special_tokens=True).input_ids
        else:
            text = render_chat(tokenizer, params.messages, params.tools, params.template_kwargs)
            # The template already wrote any BOS/special tokens it wants; adding them again doubles them.
            ids = tokenizer.encode(text, add_special_tokens=False).input_ids
    except InvalidConversationError:
        raise
    except Exception as exc:  # a tokenizer failure on this input is the input's problem: a 400
        raise InvalidConversationError(f"the messages could not be tokenized: {first_line(exc)}") from exc
    try:
        budget = completion_budget(
            context_length, int(ids.get_shape()[-1]), params.max_tokens, params.fit_to_context
        )
    except PromptTooLongError as exc:
        if exc.prompt_tokens < (context_length or 0):
            raise
        # openvino-genai's tokenizer from a GGUF cuts every encoding at the model's context length,
        # whatever ``truncation`` says, so the count above may be short: count again for the message.
        raise PromptTooLongError(
            count_in_pieces(tokenizer, text), exc.requested_tokens, exc.context_length, True
        ) from None
    try:  # checked here, so the engine's add_request never fails on a request's own settings
        generation_config(params, budget, 0).validate()
    except RuntimeError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip() and not line.startswith("Check ")]
        raise InvalidParametersError(lines[0] if lines else first_line(exc)) from exc
    return PreparedPrompt(ids.data[0].tolist(), budget, text)


def completion_budget(
    context_length: int | None, prompt_tokens: int, max_tokens: int | None, fit: bool = False
) -> int:
    """Tokens the completion may take; ``PromptTooLongError`` when prompt and completion do not fit
    (with ``fit``, when not even one completion token fits: ``max_tokens`` is then only a cap)."""
    if context_length is None:
        return max_tokens or FALLBACK_MAX_TOKENS
    available = context_length - prompt_tokens
    requested = max_tokens if max_tokens is not None else max(available, 0)
    if fit and available > 0:
        requested = min(requested, available)
    if available <= 0 or requested > available:
        raise PromptTooLongError(prompt_tokens, requested, context_length)
    return requested


PIECE_CHARS = 2000
"""Characters a piece when counting past a tokenizer's cut: even at 4 tokens a character (byte fallback)
a piece stays under the smallest context length OpenArc meets."""


def count_in_pieces(tokenizer: Any, text: str) -> int:
    """Tokens in ``text``, encoded in pieces of whole lines (or ``PIECE_CHARS`` of a longer line); a token
    that spans a piece boundary may count twice, so the sum is close, not exact."""
    pieces, current = [], ""
    for line in text.splitlines(keepends=True):
        if len(current) + len(line) > PIECE_CHARS and current:
            pieces.append(current)
            current = ""
        while len(line) > PIECE_CHARS:
            pieces.append(line[:PIECE_CHARS])
            line = line[PIECE_CHARS:]
        current += line
    pieces.append(current)
    return sum(
        int(tokenizer.encode(piece, add_special_tokens=False).input_ids.get_shape()[-1])
        for piece in pieces
        if piece
    )


def ids_tensor(ids: list[int]) -> Any:
    """Token ids as the [1, n] int64 tensor the pipelines take."""
    return ov.Tensor(np.array([ids], dtype=np.int64))


def encode_chat(
    tokenizer: Any, messages: tuple[ChatMessage, ...], tools: tuple[dict[str, Any], ...] = ()
) -> tuple[Any, int]:
    """Render ``messages`` (and ``tools``) with the chat template and tokenize; returns (ids, count)."""
    ids = tokenizer.encode(render_chat(tokenizer, messages, tools), add_special_tokens=False).input_ids
    return ids, int(ids.get_shape()[-1])


def render_chat(
    tokenizer: Any,
    messages: tuple[ChatMessage, ...],
    tools: tuple[dict[str, Any], ...] = (),
    template_kwargs: dict[str, Any] | None = None,
) -> str:
    """The prompt text: ``messages`` (and ``tools``) rendered by the model's chat template."""
    history = ov_genai.ChatHistory([_template_message(m) for m in messages])
    try:
        return tokenizer.apply_chat_template(
            history,
            add_generation_prompt=True,
            tools=list(tools) or None,
            extra_context=template_kwargs or None,
        )
    except RuntimeError as exc:
        raise InvalidConversationError(f"the model's chat template rejected the messages: {exc}") from exc


def _template_message(message: ChatMessage) -> dict[str, Any]:
    """A message in the shape Hugging Face chat templates expect (tool calls as vLLM passes them)."""
    entry: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        entry["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        entry["tool_call_id"] = message.tool_call_id
    return entry


def generation_config(params: GenerationParams, max_new_tokens: int, index: int) -> Any:
    """The ``GenerationConfig`` for choice ``index`` of a request."""
    config = ov_genai.GenerationConfig()
    config.max_new_tokens = max_new_tokens
    config.ignore_eos = params.ignore_eos
    config.presence_penalty = params.presence_penalty
    config.frequency_penalty = params.frequency_penalty
    config.repetition_penalty = params.repetition_penalty
    if params.temperature > 0:
        config.do_sample = True
        config.temperature = params.temperature
        config.top_p = params.top_p
        if params.top_k > 0:
            config.top_k = params.top_k
        if params.min_p > 0:
            config.min_p = params.min_p
    if params.seed is not None:
        config.rng_seed = params.seed + index  # n choices with one seed must still differ
    # The engine stops on these; it keeps the matched text so that our StopMatcher, which sees every
    # delta, is the one place that cuts it (openvino-genai alone leaves a stop string that ends
    # mid-token in the output).
    config.stop_strings = set(params.stop)
    config.include_stop_str_in_output = True
    if params.logprobs:
        config.logprobs = 1  # the chosen token's log probability: all openvino-genai reports
    if params.constraint is not None:
        config.structured_output_config = structured_output_config(params.constraint)
    if params.num_assistant_tokens is not None:
        config.num_assistant_tokens = params.num_assistant_tokens
    if params.max_ngram_size is not None:
        config.max_ngram_size = params.max_ngram_size
    return config


def structured_output_config(constraint: Constraint) -> Any:
    """openvino-genai's form of an output constraint (compiled by xgrammar when the request starts).

    JSON schemas go as OpenArc's own compact grammar where it can express them (``json_grammar``):
    xgrammar's converter lets the model write any whitespace between JSON tokens, and small models fill
    it with newlines until ``max_tokens`` (measured on the demo model: 7 failures in 8 with the schema
    path, none with the grammar). Schemas it cannot express go to xgrammar's converter as they are.
    """
    so = ov_genai.StructuredOutputConfig
    if isinstance(constraint, JsonConstraint) and not constraint.prefix:
        ebnf = compact_grammar(constraint.schema)
        return so(grammar=ebnf) if ebnf is not None else so(json_schema=constraint.schema)
    if isinstance(constraint, TaggedCallsConstraint):
        tags = [so.Tag(call.begin, _json_element(call.schema), call.end) for call in constraint.calls]
        return so(
            structural_tags_config=so.TagsWithSeparator(tags, constraint.separator, True, constraint.single)
        )
    if isinstance(constraint, AnyOfConstraint):
        # xgrammar takes a union only of elements that all end (or all repeat): each option is one item.
        return so(structural_tags_config=so.Union(*[_one_item(option) for option in constraint.options]))
    return so(structural_tags_config=_one_item(constraint))


def _one_item(constraint: JsonConstraint | TaggedCallsConstraint) -> Any:
    """A structural-tag element producing exactly one JSON document or one tagged call."""
    so = ov_genai.StructuredOutputConfig
    if isinstance(constraint, JsonConstraint):
        schema = _json_element(constraint.schema)
        return so.ConstString(constraint.prefix) + schema if constraint.prefix else schema
    tags = [so.Tag(call.begin, _json_element(call.schema), call.end) for call in constraint.calls]
    return tags[0] if len(tags) == 1 else so.Union(*tags)


def _json_element(schema: str) -> Any:
    so = ov_genai.StructuredOutputConfig
    ebnf = compact_grammar(schema)
    return so.EBNF(ebnf) if ebnf is not None else so.JSONSchema(schema)


@functools.lru_cache(maxsize=256)
def compact_grammar(schema: str) -> str | None:
    """The compact EBNF grammar for a JSON schema's text, or ``None`` (remembered: agents repeat schemas)."""
    try:
        return json_schema_to_ebnf(json.loads(schema))
    except ValueError:
        return None
