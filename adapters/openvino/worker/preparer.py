"""The prompt preparer: a process beside each engine that templates and tokenizes requests.

Why a process of its own: openvino-genai's chat template and tokenizer calls hold the GIL, and so does
the engine's ``step()``, so on a thread they would still run between two steps. Measured on the
demo model (2 cores): a request of 20,000 messages costs 0.14 s of templating and 0.08 s of
tokenizing, and with that work on the step loop the 8 streams running beside it saw inter-token gaps
of up to 0.9 s (p95 0.79 s, against a p50 of 0.1 s); see ``python -m bench.huge_prompt``.

The engine forwards each ``Add`` here and receives ``Prepared`` (token ids, completion budget, and the
constraint lowered and checked once, here: see ``constraint``) or ``Rejected``. A reader thread takes
requests off the socket as they come, so the engine's send of a large request never waits on this
process's own replies (two blocking senders could otherwise wait on each other). End-of-file means
the engine is gone: the preparer exits.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ...base import (
    AdapterError,
    InvalidConstraintError,
    InvalidConversationError,
    OutputFormat,
    PromptTooLongError,
    ReasoningFormat,
    first_line,
)
from ...channel import (
    Add,
    BlockingFrames,
    ChannelClosedError,
    Counted,
    LoadFailed,
    Prepared,
    Ready,
    Rejected,
    StructuredOutput,
    failure_to_wire,
)
from ...output_parsing import detect_output_format, reasoning_opened

logger = logging.getLogger(__name__)


def preparer_main(sock: socket.socket, spec: Any, setup_logging: Callable[[], None]) -> None:
    """Load the model's tokenizer (with its chat template), then prepare requests until end-of-file."""
    setup_logging()
    frames = BlockingFrames(sock, Add)
    try:
        import openvino_genai as ov_genai

        tokenizer = ov_genai.Tokenizer(str(spec.path))
        state: Ready | LoadFailed = Ready()
    except Exception as exc:  # the engine reports it as the model's load failure
        logger.exception("the prompt preparer could not load the tokenizer")
        state = LoadFailed(f"could not load the tokenizer: {first_line(exc)}")
    else:
        if spec.chat_template is not None:
            state = _use_chat_template(tokenizer, spec.chat_template)
        if isinstance(state, Ready):
            state = Ready(
                model_output_format(tokenizer.chat_template, spec.tool_parser, spec.reasoning_parser)
            )
            logger.debug("model %s output format: %s", spec.model_id, state.output_format)
    reasoning = state.output_format.reasoning if isinstance(state, Ready) else None
    try:
        frames.send(state)
    except OSError:  # the engine already gave up (its own load failed): nothing to prepare for
        return
    if isinstance(state, LoadFailed):
        return
    inbox: queue.SimpleQueue[Add | None] = queue.SimpleQueue()
    threading.Thread(target=_read, args=(frames, inbox), name="preparer-reader", daemon=True).start()
    preparer = Preparer(tokenizer, spec, reasoning)
    while (message := inbox.get()) is not None:
        try:
            frames.send(preparer.prepare(message))
        except OSError:
            return


class Preparer:
    """Turns one ``Add`` into ``Prepared`` or ``Rejected``; whatever a request does, it keeps serving."""

    def __init__(self, tokenizer: Any, spec: Any, reasoning: ReasoningFormat | None):
        self.tokenizer = tokenizer
        self.spec = spec
        self.reasoning = reasoning
        self._checker: Any = None

    def prepare(self, message: Add) -> Prepared | Counted | Rejected:
        """Template, tokenize and check one request: ``Prepared`` for the engine, ``Counted`` for a
        ``prompt_only`` or detokenize request, ``Rejected`` (never an exception) when it fails."""
        from .constraint import build, lower
        from .prompt import prepare_prompt

        params = message.params
        try:
            if params.decode_ids is not None:
                text = self.tokenizer.decode(list(params.decode_ids), skip_special_tokens=False)
                return Counted(message.request_id, list(params.decode_ids), text)
            limit = None if params.prompt_only else self.spec.context_length
            # Lowered and built once here: the same object is validated, checked on the probe, and the
            # engine gets the lowered form, so it never parses a schema.
            lowered = None if params.prompt_only or params.constraint is None else lower(params.constraint)
            built = None if lowered is None else build(lowered)
            prompt = prepare_prompt(self.tokenizer, params, limit, built)
            if params.prompt_only:
                return self._counted(message.request_id, prompt)
            if lowered is not None:
                self._check(lowered, built, params.constraint_param)
        except AdapterError as exc:
            return Rejected(message.request_id, failure_to_wire(exc))
        except Exception as exc:
            logger.exception("preparing request %d failed", message.request_id)
            error = InvalidConversationError(f"the prompt could not be prepared: {first_line(exc)}")
            return Rejected(message.request_id, failure_to_wire(error))
        raw = params.prompt is not None
        # The engine needs neither the messages nor the prompt text; "" still tells it the prompt was raw
        # text (a completion), whose output is never parsed for reasoning.
        settings = dataclasses.replace(
            params, messages=(), tools=(), prompt="" if raw else None, constraint=None
        )
        opened = not raw and reasoning_opened(prompt.text, self.reasoning)
        return Prepared(message.request_id, prompt.ids, prompt.budget, settings, opened, lowered)

    def _counted(self, request_id: int, prompt: Any) -> Counted:
        """A prompt_only request's tokens. openvino-genai's tokenizer from a GGUF cuts every encoding at
        the model's context length, so a prompt that reaches it cannot be listed whole: that is a
        ``PromptTooLongError`` with the count made in pieces, as for a generation."""
        from .prompt import count_in_pieces

        limit = self.spec.context_length
        if limit is not None and len(prompt.ids) >= limit:
            raise PromptTooLongError(count_in_pieces(self.tokenizer, prompt.text), 0, limit, True)
        return Counted(request_id, prompt.ids, prompt.text)

    def _check(self, lowered: StructuredOutput, built: Any, param: str) -> None:
        """Compile the constraint (``built`` from ``lowered``) on the grammar probe, so a bad one is this
        client's 400 and never reaches the engine, where its failure would end every running request."""
        from .grammar_check import GrammarChecker

        if self._checker is None:  # built on first use: models never asked for JSON pay nothing
            cache = Path(self.spec.properties.get("CACHE_DIR") or tempfile.gettempdir())
            self._checker = GrammarChecker(cache)
        # The lowered form names the compiled objects exactly, and is the same for the same constraint.
        reason = self._checker.check(built, key=msgspec.json.encode(lowered).decode())
        if reason is not None:
            raise InvalidConstraintError(reason, param)


def _use_chat_template(tokenizer: Any, template: str) -> Ready | LoadFailed:
    """Replace the model's chat template, and render a short chat with it now, so a broken template is
    a load failure with its reason rather than a 400 on every request."""
    tokenizer.set_chat_template(template)
    sample = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    try:
        tokenizer.apply_chat_template(sample, add_generation_prompt=True)
    except Exception as exc:  # noqa: BLE001 - any failure to render is the template's
        return LoadFailed(f"the configured chat_template does not render: {first_line(exc)}")
    return Ready()


def model_output_format(chat_template: str, tool_parser: str, reasoning_parser: str) -> OutputFormat:
    """How the model's output is parsed: found in its chat template, unless the config says otherwise
    (``auto`` detects, ``none`` turns parsing off, anything else names the format)."""
    found = detect_output_format(chat_template or "")
    tool_format = {"auto": found.tool_format, "none": None}.get(tool_parser, tool_parser)
    reasoning = {"auto": found.reasoning, "none": None}.get(reasoning_parser, ReasoningFormat())
    return OutputFormat(tool_format=tool_format, reasoning=reasoning)


def _read(frames: BlockingFrames, inbox: queue.SimpleQueue) -> None:
    try:
        while True:
            inbox.put(frames.recv())
    except (ChannelClosedError, OSError):
        inbox.put(None)
