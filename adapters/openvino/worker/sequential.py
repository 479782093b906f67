"""A one-request-at-a-time engine over ``LLMPipeline``, for devices whose pipeline cannot batch (NPU).

It offers the engine process the same interface as the continuous-batching engine (``add``,
``cancel``, ``step``, ``busy``, ``running``), so queueing, admission control and cancellation behave the
same: a request cancelled while queued never starts; a running one stops at its next token.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import openvino_genai as ov_genai

from ...base import AdapterError, GenerationFailedError, InvalidParametersError
from ...channel import Prepared
from .engine import Engine, EngineRequest, TextSequence

logger = logging.getLogger(__name__)


class _SequenceStreamer(ov_genai.StreamerBase):
    """Feeds one sequence's tokens through its text pipeline and tells the pipeline when to stop.

    Between tokens it lets the engine process exchange messages (``pump``), so new requests queue up
    and cancellations arrive while a long generation runs. openvino-genai prints and swallows
    exceptions raised in a streamer, so every failure is kept here and re-raised after ``generate``.
    """

    def __init__(self, engine: SequentialEngine, request: EngineRequest, sequence: TextSequence):
        super().__init__()
        self.engine = engine
        self.request = request
        self.sequence = sequence
        self.error: BaseException | None = None

    def write(self, token: int | list[int]) -> ov_genai.StreamingStatus:
        try:
            ids = [token] if isinstance(token, int) else list(token)
            self.engine.count(self.sequence.config, len(ids))
            events = self.sequence.advance(len(ids), self.sequence.detokenizer.push(ids), False)
            if events:
                self.engine.emit(self.request.id, events)
            self.engine.pump()
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self.error = exc
            return ov_genai.StreamingStatus.CANCEL
        if self.engine.cancelled(self.request.id):
            return ov_genai.StreamingStatus.CANCEL
        return ov_genai.StreamingStatus.STOP if self.sequence.done else ov_genai.StreamingStatus.RUNNING

    def end(self) -> None:
        """Nothing to flush here: the engine finishes the sequence after ``generate`` returns."""


class SequentialEngine(Engine):
    """Runs queued requests one after another on an ``LLMPipeline``."""

    def __init__(self, pipeline: Any):
        super().__init__(pipeline)
        self.pending: deque[EngineRequest] = deque()
        self.current: EngineRequest | None = None
        self._cancelled_current = False

    @property
    def busy(self) -> bool:
        """Whether requests are queued (the one generating is inside ``step()`` already)."""
        return bool(self.pending)

    @property
    def running(self) -> int:
        """1 while a request is generating, else 0."""
        return 0 if self.current is None else 1

    def add(self, prepared: Prepared) -> None:
        """Queue a request; one asking for logprobs is refused (an error emitted for it): ``LLMPipeline``
        cannot give them."""
        if prepared.params.logprobs:  # LLMPipeline's streamer gets token ids only, never their probabilities
            self.emit(
                prepared.request_id,
                InvalidParametersError("logprobs are not available on the sequential engine"),
            )
            return
        try:
            self.pending.append(self.new_request(prepared))
        except AdapterError as exc:
            self.emit(prepared.request_id, exc)

    def cancel(self, request_id: int) -> None:
        """Drop ``request_id`` from the queue, or stop it at its next token if it is the one generating."""
        if self.current is not None and self.current.id == request_id:
            self._cancelled_current = True
        self.pending = deque(r for r in self.pending if r.id != request_id)

    def cancelled(self, request_id: int) -> bool:
        """Whether ``request_id`` is generating now and was cancelled (its streamer then stops it)."""
        return self._cancelled_current and self.current is not None and self.current.id == request_id

    def step(self) -> None:
        """Run the next queued request to the end (or until it is cancelled)."""
        request = self.pending.popleft()
        self.current, self._cancelled_current = request, False
        try:
            self._generate(request)
        except Exception as exc:  # one failing request must not stop the engine
            logger.exception("generation of request %d failed", request.id)
            self.emit(request.id, GenerationFailedError(f"generation failed: {exc}"))
        finally:
            self.current = None

    def close(self) -> None:
        """Drop the queue and stop the current generation at its next token."""
        self.pending.clear()
        self._cancelled_current = True

    def _generate(self, request: EngineRequest) -> None:
        for sequence in request.sequences:
            streamer = _SequenceStreamer(self, request, sequence)
            self.pipeline.generate(request.prompt_tensor(), sequence.config, streamer)
            if streamer.error is not None:
                raise streamer.error
            if self._cancelled_current:
                return
            if not sequence.done:
                # LLMPipeline does not say why it stopped: a spent budget means "length".
                limit = sequence.config.max_new_tokens
                sequence.last_reason = "length" if sequence.generated >= limit else "stop"
                self.emit(request.id, sequence.advance(0, "", True))
        self.emit(request.id, [request.usage])
