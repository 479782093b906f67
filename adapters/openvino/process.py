"""The server's handle on one engine process: start it, route requests to it, notice when it dies.

Why a process: openvino-genai's ``ContinuousBatchingPipeline.step()`` holds the GIL for the whole step.
Measured here with the engine on a thread (demo model, 8 streams, 2 cores): a 1 ms asyncio sleep
overslept by 66 ms at p50 and 626 ms at worst, the length of a step, so every HTTP read, write and
health check waited for inference. In its own process the engine cannot block the event loop.

This module imports no OpenVINO. Messages cross a socket as whole frames (``adapters.channel``). The
engine is watched two ways: end-of-file on the channel (the process exited, however it died) and a
watchdog on progress (the engine reports every step, and at least every ``HEARTBEAT_SECONDS`` while
it has work; silence past ``stall_timeout`` while requests wait means it is stuck, and it is killed).
Either way every request it held ends at once with ``EngineUnavailableError`` and the owner's
``on_failure`` callback decides what happens next (the registry restarts it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..base import (
    AdapterError,
    EngineCounts,
    EngineOverloadedError,
    EngineUnavailableError,
    Event,
    GenerationParams,
    ModelLoadError,
    OutputFormat,
    ReasoningDelta,
    TextDelta,
    Usage,
)
from ..channel import (
    ENGINE_BROKEN,
    PREPARER_EXITED,
    Add,
    AsyncFrames,
    Batch,
    BlockingFrames,
    Cancel,
    ChannelClosedError,
    Close,
    FromEngine,
    LoadFailed,
    Ready,
    failure_from_wire,
    socket_pair,
)
from .worker.loop import engine_main
from .worker.preparer import preparer_main

logger = logging.getLogger(__name__)

_RESTART_AFTER = 2
"""``Retry-After`` (seconds) sent to requests cut off by an engine failure: a restart is under way."""


def _with_queued(
    first: list[Event], queue: asyncio.Queue[list[Event] | AdapterError]
) -> tuple[list[Event], AdapterError | None]:
    """``first`` and the batches already queued behind it, up to a failure (returned, to be raised
    after the events before it)."""
    events = list(first)
    while not queue.empty():
        more = queue.get_nowait()
        if isinstance(more, AdapterError):
            return events, more
        events.extend(more)
    return events, None


def _joined(events: list[Event]) -> list[Event]:
    """``events`` with adjacent text of one choice joined into one event.

    When the client or the server falls behind the engine (many streams on two cores), batches queue
    up; sending what has piled up as one chunk instead of one per token saves the per-chunk work
    (encoding, SSE framing, a socket write) exactly when it hurts.
    """
    joined: list[Event] = []
    for event in events:
        last = joined[-1] if joined else None
        same_stream = type(last) is type(event) and last.index == event.index
        if isinstance(event, TextDelta | ReasoningDelta) and same_stream:
            joined[-1] = type(event)(index=event.index, text=last.text + event.text)
        else:
            joined.append(event)
    return joined


class EngineProcess:
    """One engine process: admission control, request routing, cancellation and failure detection."""

    def __init__(
        self,
        name: str,
        builder: str,
        spec: Any,
        max_in_flight: int,
        stall_timeout: float | None = None,
        setup_logging: Callable[[], None] = logging.basicConfig,
    ):
        """Start the processes and wait until the model is loaded; ``ModelLoadError`` if it cannot be.

        ``setup_logging`` runs first thing in each child (it must pickle: a module-level function or a
        ``functools.partial`` of one), so the children log the way the server does.
        """
        self._name = name
        self._max_in_flight = max_in_flight
        self._stall_timeout = stall_timeout
        context = multiprocessing.get_context("spawn")  # fork would copy the server's threads and locks
        self._socket, engine_end = socket_pair()
        to_preparer, preparer_end = socket_pair()
        self._process = context.Process(
            target=engine_main,
            args=(engine_end, to_preparer, builder, spec, setup_logging),
            name=f"openarc-engine-{name}",
            daemon=True,
        )
        self._preparer = context.Process(
            target=preparer_main,
            args=(preparer_end, spec, setup_logging),
            name=f"openarc-prep-{name}",
            daemon=True,
        )
        self._process.start()
        self._preparer.start()
        for child_end in (engine_end, to_preparer, preparer_end):
            child_end.close()  # the children have their own copies: EOF reaches each end when one dies
        self._frames: AsyncFrames | None = None
        self.output_format = OutputFormat()
        """How the model's output is parsed, as the preparer found it in the chat template."""
        self.inference_precision: str | None = None
        """The precision the engine's device computes in, as the engine reported it at load."""
        self._handshake()
        self._tasks: list[asyncio.Task] = []
        self._on_failure: Callable[[str], None] | None = None
        self._ids = itertools.count(1)
        self._requests: dict[int, asyncio.Queue[list[Event] | AdapterError]] = {}
        self._in_engine: set[int] = set()  # requests the engine still works on (the watchdog's concern)
        self._running = 0
        self.counts = EngineCounts()
        """What the engine counted, as of its last batch."""
        self._last_progress = time.monotonic()
        self._down: str | None = None  # why the engine stopped serving, once it has
        self._attaching: asyncio.Future | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def in_flight(self) -> int:
        """Requests accepted and not yet finished or released."""
        return len(self._requests)

    @property
    def running(self) -> int:
        """Requests the engine reported generating after its last step."""
        return self._running

    async def start(self, on_failure: Callable[[str], None] | None = None) -> None:
        """Attach to the running event loop and start watching the engine (idempotent)."""
        if on_failure is not None:
            self._on_failure = on_failure
        if self._attaching is None:  # the first caller attaches; any caller meanwhile waits for it
            self._attaching = asyncio.ensure_future(self._attach())
        await asyncio.shield(self._attaching)

    async def _attach(self) -> None:
        self._frames = await AsyncFrames.attach(self._socket, FromEngine)
        self._tasks = [asyncio.create_task(self._read_loop(), name=f"engine-reader-{self._name}")]
        if self._stall_timeout is not None:
            self._tasks.append(asyncio.create_task(self._watchdog(), name=f"engine-watchdog-{self._name}"))

    async def generate(self, params: GenerationParams) -> AsyncIterator[Event]:
        """Submit a request and yield its events; closing the iterator early cancels it in the engine."""
        if self._down is not None:
            raise EngineUnavailableError(self._down, retry_after=_RESTART_AFTER)
        if len(self._requests) >= self._max_in_flight:
            raise EngineOverloadedError(retry_after=1)
        await self.start()
        if self._frames is None or self._down is not None:
            raise EngineUnavailableError(self._down or "the engine is not running", _RESTART_AFTER)
        request_id = next(self._ids)
        events: asyncio.Queue[list[Event] | AdapterError] = asyncio.Queue()
        if not self._in_engine:  # an idle engine has had no reason to report: start the clock now
            self._last_progress = time.monotonic()
        self._requests[request_id] = events
        self._in_engine.add(request_id)
        try:
            self._frames.send(Add(request_id, params))
            await self._frames.drain()  # a large prompt: wait for the socket rather than buffer more
            failure: AdapterError | None = None
            while True:
                outcome = failure or await events.get()
                if isinstance(outcome, AdapterError):
                    raise outcome  # the engine has already dropped the request
                batch, failure = _with_queued(outcome, events)
                for event in _joined(batch):
                    yield event
                    if isinstance(event, Usage):
                        return
        except ConnectionError:
            raise EngineUnavailableError(self._down or "the engine process exited", _RESTART_AFTER) from None
        finally:
            self._requests.pop(request_id, None)
            if request_id in self._in_engine and self._down is None:
                self._frames.send(Cancel(request_id))
            self._in_engine.discard(request_id)

    async def close(self, reason: str) -> None:
        """Fail every request at once with ``reason``, then stop the engine process."""
        if self._down is None:
            try:  # before _stop_serving closes the stream; the transport flushes it before closing
                if self._frames is not None:
                    self._frames.send(Close())
                else:
                    BlockingFrames(self._socket, FromEngine).send(Close())
            except OSError:
                pass
        self._stop_serving(reason)
        await asyncio.to_thread(self._reap, 30)

    # --- inside ---

    def _handshake(self) -> None:
        """Wait for the engine's first message: ready, or why the model could not be loaded."""
        frames = BlockingFrames(self._socket, FromEngine)
        try:
            message = frames.recv()
        except ChannelClosedError:
            self._process.join(timeout=5)
            message = LoadFailed(
                f"the engine process exited during load (exit code {self._process.exitcode})"
            )
        if isinstance(message, LoadFailed):
            self._socket.close()
            self._reap(30)
            raise ModelLoadError(message.reason)
        if isinstance(message, Ready):
            self.output_format = message.output_format
            self.inference_precision = message.inference_precision

    async def _read_loop(self) -> None:
        assert self._frames is not None
        try:
            while True:
                message = await self._frames.recv()
                self._last_progress = time.monotonic()
                if isinstance(message, Batch):
                    self._deliver(message)
        except ChannelClosedError:
            if self._down is None:
                await asyncio.to_thread(self._process.join, 2)
                code = self._process.exitcode
                if code == PREPARER_EXITED:
                    self._fail("the engine's prompt preparer process exited")
                elif code == ENGINE_BROKEN:
                    self._fail("the engine failed a step and is restarting")
                else:
                    self._fail(f"the engine process exited (exit code {code})")
        except Exception:  # a message we cannot read means the stream can no longer be trusted
            logger.exception("engine channel of %s failed", self._name)
            self._kill()
            self._fail("the engine channel failed")

    def _deliver(self, batch: Batch) -> None:
        self._running = batch.running
        self.counts = batch.counts
        for request_id, outcome in batch.outcomes.items():
            ended = not isinstance(outcome, list) or any(isinstance(event, Usage) for event in outcome)
            if ended:
                self._in_engine.discard(request_id)
            queue = self._requests.get(request_id)
            if queue is not None:  # else the consumer already left and the engine was told
                queue.put_nowait(outcome if isinstance(outcome, list) else failure_from_wire(outcome))

    async def _watchdog(self) -> None:
        assert self._stall_timeout is not None
        while self._down is None:
            await asyncio.sleep(min(1.0, self._stall_timeout / 4))
            silent = time.monotonic() - self._last_progress
            if self._in_engine and silent > self._stall_timeout:
                self._kill()
                self._fail(f"the engine made no progress for {silent:.0f} s (stall_timeout) and was stopped")

    def _fail(self, reason: str) -> None:
        """The engine died or stalled: end its requests now and tell the owner, once."""
        if self._down is not None:
            return
        logger.error("engine of %s: %s", self._name, reason)
        self._stop_serving(reason)
        if self._on_failure is not None:
            self._on_failure(reason)

    def _stop_serving(self, reason: str) -> None:
        if self._down is None:
            self._down = reason
        self._running = 0
        for queue in self._requests.values():
            queue.put_nowait(EngineUnavailableError(reason, retry_after=_RESTART_AFTER))
        current = asyncio.current_task()  # always on the loop: from close() or an engine watcher task
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self._frames is not None:
            self._frames.close()

    def _kill(self) -> None:
        for process in (self._process, self._preparer):
            if process.is_alive():
                process.kill()

    def _reap(self, timeout: float) -> None:
        """Wait for both processes to exit (they do once the engine is told to close or dies)."""
        for process in (self._process, self._preparer):
            process.join(timeout=timeout)
            if process.is_alive():
                logger.warning("%s did not stop in %.0f s; killing it", process.name, timeout)
                process.kill()
                process.join(timeout=10)
        if self._frames is None:
            self._socket.close()
