"""The engine loop over openvino-genai's ContinuousBatchingPipeline; runs inside the engine process.

One engine owns one pipeline. Requests arrive as ``add``/``cancel`` calls between steps; each ``step``
advances every running request by one token, turns new tokens into text and queues the resulting
events in an outbox, which the worker sends to the server process once per step.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import openvino_genai as ov_genai

from ...base import (
    RESTART_RETRY_AFTER,
    AdapterError,
    EngineCounts,
    EngineUnavailableError,
    Event,
    Finished,
    GenerationFailedError,
    GenerationParams,
    OutputFormat,
    ReasoningDelta,
    TextDelta,
    TokenLogprobs,
    ToolCallDelta,
    Usage,
    first_line,
)
from ...channel import Prepared
from ...output_parsing import CallStart, Content, OutputParser, Piece, Reasoning
from ...text import IncrementalDetokenizer, StopMatcher, detokenize_batch
from .constraint import build
from .prefix_cache import PrefixCacheTracker
from .prompt import generation_config, ids_tensor

logger = logging.getLogger(__name__)

_FINISH_REASONS = {
    ov_genai.GenerationFinishReason.STOP: "stop",
    ov_genai.GenerationFinishReason.LENGTH: "length",
}

KEEPS_SPECIAL_TOKENS = {"mistral", "llama3_json"}
"""Tool-call syntaxes whose markers (``[TOOL_CALLS]``, ``<|python_tag|>``) are special tokens."""


class EngineBrokenError(Exception):
    """Raised by an engine's ``step()`` when its pipeline cannot be trusted any more: the loop reports
    the failed requests and the process exits with ``ENGINE_BROKEN`` so the server starts a new one."""


Outcome = list[Event] | AdapterError
"""What one step produced for one request: new events, or the error that ended it."""


@dataclass
class TextSequence:
    """One choice of a request: its engine handle and its text pipeline (detokenizer, then stop strings)."""

    index: int
    config: Any
    detokenizer: IncrementalDetokenizer
    stops: StopMatcher
    keeps_special_tokens: bool = False
    """Decoded with special tokens: tool-call markers such as Mistral's ``[TOOL_CALLS]`` are special
    tokens, which decoding otherwise drops before the parser could see them."""
    parser: OutputParser | None = None
    """Splits the text into content, reasoning and tool calls; ``None``: all of it is content."""
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
        if self.parser is None:
            events: list[Event] = [TextDelta(self.index, text)] if text else []
        else:
            pieces = self.parser.feed(text) if text else []
            events = self._events(pieces + self.parser.finish() if finished else pieces)
        if finished:
            self.done = True
            reason = "stop" if self.stops.stopped else self.last_reason
            if reason == "stop" and self.parser is not None and self.parser.made_calls:
                reason = "tool_calls"
            events.append(Finished(self.index, reason, self.stops.matched))
        return events

    def _events(self, pieces: list[Piece]) -> list[Event]:
        """Parsed pieces as events; a call's name and its first arguments go out in one event."""
        events: list[Event] = []
        for piece in pieces:
            last = events[-1] if events else None
            if isinstance(piece, Content):
                if isinstance(last, TextDelta):
                    events[-1] = TextDelta(self.index, last.text + piece.text)
                else:
                    events.append(TextDelta(self.index, piece.text))
            elif isinstance(piece, Reasoning):
                if isinstance(last, ReasoningDelta):
                    events[-1] = ReasoningDelta(self.index, last.text + piece.text)
                else:
                    events.append(ReasoningDelta(self.index, piece.text))
            elif isinstance(piece, CallStart):
                events.append(ToolCallDelta(self.index, piece.call, piece.name, ""))
            elif isinstance(last, ToolCallDelta) and last.call == piece.call:
                events[-1] = ToolCallDelta(self.index, piece.call, last.name, last.arguments + piece.text)
            else:
                events.append(ToolCallDelta(self.index, piece.call, None, piece.text))
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
        """The prompt's length in tokens (its ``Usage.prompt_tokens``)."""
        return len(self.prompt)

    @property
    def usage(self) -> Usage:
        """The request's token accounting: its prompt, every choice's generated tokens, the cached prefix."""
        return Usage(self.prompt_tokens, sum(s.generated for s in self.sequences), self.cached_tokens)

    def prompt_tensor(self) -> Any:
        """The prompt as the tensor of token ids the pipelines take."""
        return ids_tensor(self.prompt)


class SteppedEngine(Protocol):
    """What the engine loop (``loop.EngineLoop``) drives; both engines, continuous-batching and
    sequential, are one."""

    output_format: OutputFormat
    inference_precision: str | None
    pump: Callable[[], None]
    """Called by an engine that runs a whole generation inside ``step()`` (the sequential one) between
    two tokens, so the loop can report and take commands; the loop sets it."""

    @property
    def busy(self) -> bool:
        """Whether a ``step()`` has work to do."""
        ...

    @property
    def running(self) -> int:
        """Requests generating now (reported to the server)."""
        ...

    @property
    def counts(self) -> EngineCounts:
        """What the engine has done since it started (sent to the server with every batch)."""
        ...

    def add(self, prepared: Prepared) -> None:
        """Take a prepared request (prompt ids, completion budget, lowered constraint); a failure that is this
        request's alone must be emitted for it, not raised."""
        ...

    def cancel(self, request_id: int) -> None:
        """Stop ``request_id``: a queued request never starts, a running one stops by its next token at the
        latest; a no-op once it has ended."""
        ...

    def emit(self, request_id: int, outcome: Outcome) -> None:
        """Queue events, or a final error, for ``request_id`` until the loop takes the outbox."""
        ...

    def take_outbox(self) -> dict[int, Outcome]:
        """Everything emitted since the last call, by request id; the outbox is left empty."""
        ...

    def step(self) -> None:
        """Advance the work while ``busy``: one step of every running request (the sequential engine runs
        a whole request)."""
        ...

    def close(self) -> None:
        """Stop generating and drop what is queued; the loop may call it more than once."""
        ...


class Engine:
    """What every engine shares: turning a prepared prompt and its ``GenerationParams`` into a request,
    and the outbox. Prompts arrive templated, tokenized and checked against the context window, and
    constraints lowered and checked (see ``preparer``): that work never runs between two steps."""

    def __init__(self, pipeline: Any):
        self.pipeline = pipeline
        self.tokenizer = pipeline.get_tokenizer()
        # The continuous-batching pipeline names it get_config, LLMPipeline get_generation_config.
        defaults = getattr(pipeline, "get_config", None) or pipeline.get_generation_config
        self.stop_token_ids = {self.tokenizer.get_eos_token_id(), *defaults().stop_token_ids}
        """End-of-sequence tokens: never part of the text, even when special tokens are kept."""
        self.outbox: dict[int, Outcome] = {}
        self.output_format = OutputFormat()
        """How the model writes tool calls and reasoning; set by the worker from the preparer's finding."""
        self.inference_precision: str | None = None
        """The precision the device computes in, as OpenVINO reports it; set by ``pipeline.build_engine``."""
        self.pump: Callable[[], None] = lambda: None
        """See ``SteppedEngine.pump``."""
        self.generated_tokens = 0
        self.speculative_steps = 0
        self.accepted_tokens = 0

    @property
    def counts(self) -> EngineCounts:
        """What this engine has done since it started (sent to the server with every batch)."""
        return EngineCounts(self.generated_tokens, self.speculative_steps, self.accepted_tokens)

    def count(self, config: Any, tokens: int) -> None:
        """One sequence got ``tokens`` new tokens in one step. On a speculative model (its requests say
        how many tokens to guess) one of them is the step's own token and the rest accepted guesses."""
        self.generated_tokens += tokens
        if tokens and config.num_assistant_tokens:
            self.speculative_steps += 1
            self.accepted_tokens += tokens - 1

    def new_request(self, prepared: Prepared) -> EngineRequest:
        """One sequence per choice, each with its generation config and text pipeline; the constraint
        comes as the preparer lowered (and checked) it."""
        params = prepared.params
        # Built once for every choice: no schema is parsed here (see ``constraint.build``).
        structured_output = None if prepared.constraint is None else build(prepared.constraint)
        sequences = []
        for index in range(params.n):
            config = generation_config(params, prepared.max_new_tokens, index, structured_output)
            stops = StopMatcher(params.stop)
            keep = params.tool_format in KEEPS_SPECIAL_TOKENS
            detokenizer = IncrementalDetokenizer(self._decode_keeping_special if keep else self._decode)
            sequence = TextSequence(index, config, detokenizer, stops, keeps_special_tokens=keep)
            sequence.parser = self._parser(params, prepared.reasoning_open)
            sequences.append(sequence)
        return EngineRequest(prepared.request_id, prepared.prompt, sequences)

    def _parser(self, params: GenerationParams, reasoning_open: bool) -> OutputParser | None:
        reasoning = self.output_format.reasoning if params.prompt is None else None  # "": a completion
        if params.tool_format is None and reasoning is None:
            return None  # the common case: every piece of text is content, with no parsing cost
        output_format = OutputFormat(tool_format=params.tool_format, reasoning=reasoning)
        return OutputParser(
            output_format, parse_tools=params.tool_format is not None, reasoning_open=reasoning_open
        )

    def emit(self, request_id: int, outcome: Outcome) -> None:
        """Queue events (or a final error) for the server process."""
        if isinstance(outcome, AdapterError) or request_id not in self.outbox:
            self.outbox[request_id] = outcome
        else:
            previous = self.outbox[request_id]
            if isinstance(previous, list):
                previous.extend(outcome)

    def take_outbox(self) -> dict[int, Outcome]:
        """Everything emitted since the last call, by request id; the outbox is left empty."""
        outbox, self.outbox = self.outbox, {}
        return outbox

    def _decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids)

    def _decode_keeping_special(self, token_ids: list[int]) -> str:
        return self.decode_batch([token_ids], keep_special=True)[0]

    def decode_batch(self, windows: list[list[int]], keep_special: bool = False) -> list[str]:
        """Decode token windows; ``keep_special`` keeps special tokens, but never end-of-sequence ones."""
        if not keep_special:
            return self.tokenizer.decode(windows)
        stops = self.stop_token_ids
        return self.tokenizer.decode(
            [[t for t in w if t not in stops] for w in windows], skip_special_tokens=False
        )

    def token_logprobs(self, index: int, ids: list[int], logprobs: list[float]) -> TokenLogprobs:
        """Each token as its own text (special tokens included, as OpenAI shows them) with its logprob."""
        tokens = [self.tokenizer.decode([token], skip_special_tokens=False) for token in ids]
        return TokenLogprobs(index, tokens, [float(value) for value in logprobs[: len(ids)]])


class ContinuousBatchingEngine(Engine):
    """Serves many requests at once, stepping them together."""

    def __init__(self, pipeline: Any, prefix_cache: PrefixCacheTracker | None = None):
        super().__init__(pipeline)
        self.active: dict[int, EngineRequest] = {}
        self.prefix_cache = prefix_cache
        self._handle_ids = itertools.count(1)

    @property
    def busy(self) -> bool:
        """Whether any request is generating (a ``step()`` has work)."""
        return bool(self.active)

    @property
    def running(self) -> int:
        """Requests generating now (reported to the server)."""
        return len(self.active)

    def add(self, prepared: Prepared) -> None:
        """Start a request; any failure (too long, bad template, engine refusal) fails only this request."""
        request_id = prepared.request_id
        try:
            request = self.new_request(prepared)
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
                self.emit(request_id, EngineUnavailableError(reason, retry_after=RESTART_RETRY_AFTER))
            self.active.clear()
            raise EngineBrokenError(reason) from exc
        reads: list[tuple[EngineRequest, TextSequence, list[int], list[float], bool]] = []
        for request_id, request in list(self.active.items()):
            try:
                reads += [(request, seq, *_read(seq)) for seq in request.sequences if not seq.done]
            except Exception as exc:  # one bad request must not take the others down
                logger.exception("reading output of request %d failed", request_id)
                _cancel_handles(request)
                del self.active[request_id]
                self.emit(request_id, GenerationFailedError(str(exc)))
        texts = self._detokenize([(seq, ids) for _, seq, ids, _, _ in reads])
        events: dict[int, list[Event]] = {}
        for (request, seq, ids, logprobs, engine_finished), text in zip(reads, texts, strict=True):
            if request.id not in self.active:
                continue
            request_events = events.setdefault(request.id, [])
            self.count(seq.config, len(ids))
            if seq.config.logprobs and ids:
                request_events.append(self.token_logprobs(seq.index, ids, logprobs))
            request_events.extend(seq.advance(len(ids), text, engine_finished))
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

    def _detokenize(self, work: list[tuple[TextSequence, list[int]]]) -> list[str]:
        """New text of each sequence: one decode call for all, or two when some keep special tokens."""
        texts = [""] * len(work)
        for keep in (False, True):
            group = [i for i, (seq, _) in enumerate(work) if seq.keeps_special_tokens == keep]
            if group:
                decode = functools.partial(self.decode_batch, keep_special=keep)
                done = detokenize_batch([(work[i][0].detokenizer, work[i][1]) for i in group], decode)
                for i, text in zip(group, done, strict=True):
                    texts[i] = text
        return texts

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


def _read(seq: TextSequence) -> tuple[list[int], list[float], bool]:
    """New token ids of one sequence, their log probabilities (when asked for), and whether the engine
    has finished it."""
    ids: list[int] = []
    logprobs: list[float] = []
    while seq.handle.can_read():
        for output in seq.handle.read().values():
            ids.extend(output.generated_ids)
            if seq.config.logprobs:
                logprobs.extend(output.generated_log_probs)
            seq.last_reason = _FINISH_REASONS.get(output.finish_reason, seq.last_reason)
    return ids, logprobs, seq.handle.get_status() != ov_genai.GenerationStatus.RUNNING


def _cancel_handles(request: EngineRequest) -> None:
    for seq in request.sequences:
        if seq.handle is not None and not seq.done:
            seq.handle.cancel()
        seq.done = True
