"""One stepping loop per (model, device) over openvino-genai's ContinuousBatchingPipeline.

The pipeline is not safe to call from several threads, and ``step()`` blocks, so a single engine thread
owns it: it admits new requests, steps the batch, reads every handle's new tokens, turns them into
text and posts events back to each request's asyncio queue with ``call_soon_threadsafe``. The asyncio
side only ever touches thread-safe inboxes, so the event loop never waits on inference.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import openvino_genai as ov_genai

from .base import AdapterError, EngineOverloadedError, Event, Finished, GenerationFailedError, TextDelta, Usage
from .text import IncrementalDetokenizer, StopMatcher

logger = logging.getLogger(__name__)

_FINISH_REASONS = {
    ov_genai.GenerationFinishReason.STOP: "stop",
    ov_genai.GenerationFinishReason.LENGTH: "length",
}


@dataclass
class _Sequence:
    """One choice of a request: its engine handle and its text pipeline."""

    index: int
    config: Any
    detokenizer: IncrementalDetokenizer
    stops: StopMatcher
    handle: Any = None
    generated: int = 0
    last_reason: str = "stop"
    done: bool = False


@dataclass
class EngineRequest:
    """A request as the engine sees it; built on the event loop, then owned by the engine thread."""

    prompt_ids: Any
    prompt_tokens: int
    sequences: list[_Sequence]
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[list[Event] | BaseException] = field(default_factory=asyncio.Queue)
    cancelled: bool = False

    def post(self, item: list[Event] | BaseException) -> None:
        """Hand events to the request's consumer from the engine thread."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, item)


class ContinuousBatchingEngine:
    """Serves many requests at once on one pipeline, through one engine thread."""

    def __init__(self, pipeline: Any, decode: Callable[[list[int]], str], max_in_flight: int, name: str):
        self._pipeline = pipeline
        self._decode = decode
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._inbox: queue.SimpleQueue[EngineRequest] = queue.SimpleQueue()
        self._cancels: queue.SimpleQueue[EngineRequest] = queue.SimpleQueue()
        self._wakeup = threading.Event()
        self._closing = False
        self._active: list[EngineRequest] = []
        self._ids = itertools.count()
        self._thread = threading.Thread(target=self._run, name=f"engine-{name}", daemon=True)
        self._thread.start()

    # --- asyncio side ---

    def new_request(self, prompt_ids: Any, prompt_tokens: int, configs: list[Any]) -> EngineRequest:
        """Build a request for the running event loop; ``configs`` holds one GenerationConfig per choice."""
        sequences = [
            _Sequence(i, cfg, IncrementalDetokenizer(self._decode), StopMatcher(sorted(cfg.stop_strings)))
            for i, cfg in enumerate(configs)
        ]
        return EngineRequest(prompt_ids, prompt_tokens, sequences, asyncio.get_running_loop())

    def submit(self, request: EngineRequest) -> None:
        """Queue ``request``; refuse at once when the engine already holds its limit."""
        if self._closing:
            raise GenerationFailedError("the model is shutting down")
        if self._in_flight >= self._max_in_flight:
            raise EngineOverloadedError(retry_after=1)
        self._in_flight += 1
        self._inbox.put(request)
        self._wakeup.set()

    def release(self, request: EngineRequest, finished: bool) -> None:
        """The consumer is done with ``request``; cancel it in the engine unless it ended by itself."""
        self._in_flight -= 1
        if not finished:
            request.cancelled = True
            self._cancels.put(request)
            self._wakeup.set()

    @property
    def in_flight(self) -> int:
        """Requests submitted and not yet released (running or waiting)."""
        return self._in_flight

    @property
    def running(self) -> int:
        """Requests the engine thread currently holds handles for."""
        return len(self._active)

    def close(self) -> None:
        """Stop the engine thread; requests still running get an error event."""
        self._closing = True
        self._wakeup.set()
        self._thread.join(timeout=30)

    # --- engine thread ---

    def _run(self) -> None:
        while not self._closing:
            self._admit()
            self._drop_cancelled()
            if not self._active:
                self._wakeup.wait()
                self._wakeup.clear()
                continue
            try:
                self._pipeline.step()
            except Exception as exc:  # the pipeline is shared: fail the batch, keep the engine alive
                logger.exception("engine step failed; failing %d running requests", len(self._active))
                self._fail_all(GenerationFailedError(f"engine step failed: {exc}"))
                continue
            self._collect()
        self._fail_all(GenerationFailedError("the model is shutting down"))

    def _admit(self) -> None:
        while True:
            try:
                request = self._inbox.get_nowait()
            except queue.Empty:
                return
            if request.cancelled:  # abandoned while queued: never start it
                continue
            try:
                for seq in request.sequences:
                    seq.handle = self._pipeline.add_request(next(self._ids), request.prompt_ids, seq.config)
            except Exception as exc:
                logger.exception("could not add a request to the engine")
                self._cancel_handles(request)
                request.post(GenerationFailedError(f"could not start generation: {exc}"))
                continue
            self._active.append(request)

    def _drop_cancelled(self) -> None:
        cancelled = set()
        while True:
            try:
                cancelled.add(id(self._cancels.get_nowait()))
            except queue.Empty:
                break
        if not cancelled:
            return
        for request in [r for r in self._active if id(r) in cancelled]:
            self._cancel_handles(request)
            self._active.remove(request)

    def _collect(self) -> None:
        still_active = []
        for request in self._active:
            if request.cancelled:
                self._cancel_handles(request)
                continue
            try:
                events = self._read(request)
            except Exception as exc:  # one bad request must not take the others down
                logger.exception("reading generation output failed")
                self._cancel_handles(request)
                request.post(GenerationFailedError(str(exc)))
                continue
            if all(seq.done for seq in request.sequences):
                events.append(Usage(request.prompt_tokens, sum(s.generated for s in request.sequences)))
            else:
                still_active.append(request)
            if events:
                request.post(events)
        self._active = still_active

    def _read(self, request: EngineRequest) -> list[Event]:
        events: list[Event] = []
        for seq in request.sequences:
            if seq.done:
                continue
            text = ""
            while seq.handle.can_read():
                for output in seq.handle.read().values():
                    ids = list(output.generated_ids)
                    seq.generated += len(ids)
                    text += seq.detokenizer.push(ids)
                    seq.last_reason = _FINISH_REASONS.get(output.finish_reason, seq.last_reason)
            finished = seq.handle.get_status() != ov_genai.GenerationStatus.RUNNING
            if finished:
                text += seq.detokenizer.flush()
            text = seq.stops.feed(text)
            if seq.stops.stopped and not finished:
                seq.handle.cancel()  # our text-level match came first: free the KV cache now
                finished = True
            if finished:
                text += seq.stops.flush()
            if text:
                events.append(TextDelta(seq.index, text))
            if finished:
                seq.done = True
                events.append(Finished(seq.index, "stop" if seq.stops.stopped else seq.last_reason))
        return events

    def _cancel_handles(self, request: EngineRequest) -> None:
        for seq in request.sequences:
            if seq.handle is not None and not seq.done:
                seq.handle.cancel()
            seq.done = True

    def _fail_all(self, error: AdapterError) -> None:
        for request in self._active:
            self._cancel_handles(request)
            request.post(error)
        self._active = []
