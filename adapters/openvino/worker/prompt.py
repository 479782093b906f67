"""A request's prompt and generation settings in openvino-genai's terms (engine and preparer processes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import openvino as ov
import openvino_genai as ov_genai

from ...base import (
    ChatMessage,
    GenerationParams,
    InvalidConversationError,
    InvalidParametersError,
    PromptTooLongError,
    first_line,
)

FALLBACK_MAX_TOKENS = 4096
"""Completion budget when a model's context length is unknown and the request sets no max_tokens."""


@dataclass(frozen=True)
class PreparedPrompt:
    """A request's prompt as token ids, with its completion budget and its rendered text."""

    ids: list[int]
    budget: int
    """Tokens the completion may take."""
    text: str
    """The prompt as rendered (what the reasoning check reads)."""


def prepare_prompt(
    tokenizer: Any, params: GenerationParams, context_length: int | None, structured_output: Any = None
) -> PreparedPrompt:
    """Template and tokenize a request's chat (or take its raw prompt), check the context window and the
    sampling settings (with ``structured_output``, the request's built constraint, if it has one).

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
        generation_config(params, budget, 0, structured_output).validate()
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


def generation_config(
    params: GenerationParams, max_new_tokens: int, index: int, structured_output: Any = None
) -> Any:
    """The ``GenerationConfig`` for choice ``index`` of a request; ``structured_output`` is its
    constraint, built once for all its choices (``constraint.build``), ``None`` when it has none."""
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
    if structured_output is not None:
        config.structured_output_config = structured_output
    if params.num_assistant_tokens is not None:
        config.num_assistant_tokens = params.num_assistant_tokens
    if params.max_ngram_size is not None:
        config.max_ngram_size = params.max_ngram_size
    return config
