"""The engine loop over openvino-genai's ContinuousBatchingPipeline; runs inside the engine process.

One engine owns one pipeline. Requests arrive as ``add``/``cancel`` calls between steps; each ``step``
advances every running request by one token, turns new tokens into text and queues the resulting
events in an outbox, which the worker sends to the server process once per step.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

import openvino_genai as ov_genai

from ..base import (
    AdapterError,
    EngineUnavailableError,
    Event,
    Finished,
    GenerationFailedError,
    GenerationParams,
    TextDelta,
    Usage,
    first_line,
)
from ..text import IncrementalDetokenizer, StopMatcher, detokenize_batch
from .prefix_cache import PrefixCacheTracker
from .prompt import generation_config, ids_tensor
from .worker import EngineBrokenError

logger = logging.getLogger(__name__)

_FINISH_REASONS = {
    ov_genai.GenerationFinishReason.STOP: "stop",
    ov_genai.GenerationFinishReason.LENGTH: "length",
}

Outcome = list[Event] | AdapterError
"""What one step produced for one request: new events, or the error that ended it."""


@dataclass
class TextSequence:
    """One choice of a request: its engine handle and its text pipeline (detokenizer, then stop strings)."""

    index: int
    config: Any
    detokenizer: IncrementalDetokenizer
    stops: StopMatcher
    handle: Any = None
    generated: int = 0
    last_reason: str = "stop"
    done: bool = False

    def advance(self, token_count: int, text: str, engine_finished: bool) -> list[Event]:
        """Take ``token_count`` new tokens, already detokenized to ``text``, and return the events.

        Afterwards ``done`` says whether the choice is over. When a stop string shows up before the
        engine finished, ``done`` is set and the caller must stop the engine's work on this sequence.
        """
        self.generated += token_count
        if engine_finished:
            text += self.detokenizer.flush()
        text = self.stops.feed(text)
        finished = engine_finished or self.stops.stopped
        if finished:
            text += self.stops.flush()
        events: list[Event] = [TextDelta(self.index, text)] if text else []
        if finished:
            self.done = True
            events.append(Finished(self.index, "stop" if self.stops.stopped else self.last_reason))
        return events


@dataclass
class EngineRequest:
    """A request inside the engine: its prompt and one ``TextSequence`` per choice."""

    id: int
    prompt: list[int]
    sequences: list[TextSequence]
    cached_tokens: int | None = None

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt)

    @property
    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, sum(s.generated for s in self.sequences), self.cached_tokens)

    def prompt_tensor(self) -> Any:
        return ids_tensor(self.prompt)


class Engine:
    """What every engine shares: turning a prepared prompt and its ``GenerationParams`` into a request,
    and the outbox. Prompts arrive templated, tokenized and checked against the context window (see
    ``prep``): that work never runs between two steps."""

    def __init__(self, pipeline: Any):
        self.pipeline = pipeline
        self.tokenizer = pipeline.get_tokenizer()
        self.outbox: dict[int, Outcome] = {}

    def new_request(
        self, request_id: int, params: GenerationParams, prompt: list[int], max_new_tokens: int
    ) -> EngineRequest:
        """One sequence per choice, each with its generation config and text pipeline."""
        sequences = []
        for index in range(params.n):
            config = generation_config(params, max_new_tokens, index)
            stops = StopMatcher(params.stop)
            sequences.append(TextSequence(index, config, IncrementalDetokenizer(self._decode), stops))
        return EngineRequest(request_id, prompt, sequences)

    def emit(self, request_id: int, outcome: Outcome) -> None:
        """Queue events (or a final error) for the server process."""
        if isinstance(outcome, AdapterError) or request_id not in self.outbox:
            self.outbox[request_id] = outcome
        else:
            previous = self.outbox[request_id]
            if isinstance(previous, list):
                previous.extend(outcome)

    def take_outbox(self) -> dict[int, Outcome]:
        outbox, self.outbox = self.outbox, {}
        return outbox

    def _decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids)


class ContinuousBatchingEngine(Engine):
    """Serves many requests at once, stepping them together."""

    def __init__(self, pipeline: Any, prefix_cache: PrefixCacheTracker | None = None):
        super().__init__(pipeline)
        self.active: dict[int, EngineRequest] = {}
        self.prefix_cache = prefix_cache
        self._handle_ids = itertools.count(1)

    @property
    def busy(self) -> bool:
        return bool(self.active)

    @property
    def running(self) -> int:
        return len(self.active)

    def add(self, request_id: int, params: GenerationParams, prompt: list[int], max_new_tokens: int) -> None:
        """Start a request; any failure (too long, bad template, engine refusal) fails only this request."""
        try:
            request = self.new_request(request_id, params, prompt, max_new_tokens)
            if self.prefix_cache is not None:
                request.cached_tokens = self.prefix_cache.cached_tokens(request.prompt)
            tensor = request.prompt_tensor()
            for seq in request.sequences:
                seq.handle = self.pipeline.add_request(next(self._handle_ids), tensor, seq.config)
        except AdapterError as exc:
            self.emit(request_id, exc)
            return
        except Exception as exc:
            logger.exception("could not start request %d", request_id)
            self.emit(request_id, GenerationFailedError(f"could not start generation: {exc}"))
            return
        self.active[request_id] = request

    def cancel(self, request_id: int) -> None:
        """Stop a request at once and free its KV cache (a no-op if it already ended)."""
        request = self.active.pop(request_id, None)
        if request is not None:
            _cancel_handles(request)
            self._remember(request)

    def step(self) -> None:
        """Advance every running request by one step and collect what it produced."""
        try:
            self.pipeline.step()
        except Exception as exc:
            # Measured (a structured-output schema xgrammar cannot compile): after a failed step the
            # pipeline refuses every later step ("cannot be called when we are already in scheduling
            # phase"). So fail the batch and stop; the server restarts the engine on a fresh pipeline.
            logger.exception("engine step failed; failing %d running requests", len(self.active))
            reason = f"the engine failed a step and is restarting ({first_line(exc)})"
            for request_id in list(self.active):
                self.emit(request_id, EngineUnavailableError(reason, retry_after=2))
            self.active.clear()
            raise EngineBrokenError(reason) from exc
        reads: list[tuple[EngineRequest, TextSequence, list[int], bool]] = []
        for request_id, request in list(self.active.items()):
            try:
                reads += [(request, seq, *_read(seq)) for seq in request.sequences if not seq.done]
            except Exception as exc:  # one bad request must not take the others down
                logger.exception("reading output of request %d failed", request_id)
                _cancel_handles(request)
                del self.active[request_id]
                self.emit(request_id, GenerationFailedError(str(exc)))
        texts = detokenize_batch([(seq.detokenizer, ids) for _, seq, ids, _ in reads], self.tokenizer.decode)
        events: dict[int, list[Event]] = {}
        for (request, seq, ids, engine_finished), text in zip(reads, texts, strict=True):
            if request.id not in self.active:
                continue
            events.setdefault(request.id, []).extend(seq.advance(len(ids), text, engine_finished))
            if seq.done and not engine_finished:
                seq.handle.cancel()  # our text-level stop match came first: free the KV cache now
        for request_id, request_events in events.items():
            request = self.active[request_id]
            if all(seq.done for seq in request.sequences):
                request_events.append(request.usage)
                del self.active[request_id]
                self._remember(request)
            if request_events:
                self.emit(request_id, request_events)

    def close(self) -> None:
        """Cancel what still runs, and step once so the pipeline frees those requests' KV blocks
        (without it, openvino-genai reports "BlockManager leaked sequence block tables" at exit)."""
        if not self.active:
            return
        for request_id in list(self.active):
            self.cancel(request_id)
        try:
            self.pipeline.step()
        except Exception:  # noqa: BLE001 - closing anyway; the leak report is all that is at stake
            logger.debug("the closing step failed", exc_info=True)

    def _remember(self, request: EngineRequest) -> None:
        """Record what the KV cache now holds for this request: its prompt and each choice's tokens."""
        if self.prefix_cache is None or not any(seq.generated for seq in request.sequences):
            return  # nothing generated: the prompt may never have been computed
        prompt = request.prompt
        for seq in request.sequences:
            self.prefix_cache.record(prompt + seq.detokenizer.token_ids)


def _read(seq: TextSequence) -> tuple[list[int], bool]:
    """New token ids of one sequence, and whether the engine has finished it."""
    ids: list[int] = []
    while seq.handle.can_read():
        for output in seq.handle.read().values():
            ids.extend(output.generated_ids)
            seq.last_reason = _FINISH_REASONS.get(output.finish_reason, seq.last_reason)
    return ids, seq.handle.get_status() != ov_genai.GenerationStatus.RUNNING


def _cancel_handles(request: EngineRequest) -> None:
    for seq in request.sequences:
        if seq.handle is not None and not seq.done:
            seq.handle.cancel()
        seq.done = True
