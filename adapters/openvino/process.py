"""The server's handle on one engine process: start it, route requests to it, notice when it dies.

Why a process: openvino-genai's ``ContinuousBatchingPipeline.step()`` holds the GIL for the whole step.
Measured here with the engine on a thread (demo model, 8 streams, 2 cores): a 1 ms asyncio sleep
overslept by 66 ms at p50 and 626 ms at worst, the length of a step, so every HTTP read, write and
health check waited for inference. In its own process the engine cannot block the event loop.

This module imports no OpenVINO. Messages cross a socket as whole frames (``adapters.channel``). The
engine and its prompt preparer are spawned and watched by the ``Supervisor``: end-of-file on the
channel (the process exited, however it died; a dead preparer takes the engine down with it) and a
watchdog on progress (the engine reports every step, and at least every ``HEARTBEAT_SECONDS`` while
it has work; silence past ``stall_timeout`` while requests wait means it is stuck, and it is killed).
Either way every request it held ends at once with ``EngineUnavailableError`` and the owner's
``on_failure`` callback decides what happens next (the registry restarts it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..base import (
    RESTART_RETRY_AFTER,
    AdapterError,
    EngineCounts,
    EngineOverloadedError,
    EngineUnavailableError,
    Event,
    GenerationParams,
    ReasoningDelta,
    TextDelta,
    Usage,
)
from ..channel import (
    ENGINE_BROKEN,
    PREPARER_EXITED,
    Add,
    Batch,
    Cancel,
    Close,
    FromEngine,
    Ready,
    failure_from_wire,
    socket_pair,
)
from .supervisor import Supervisor

_ENGINE = "adapters.openvino.worker.loop:engine_main"
_PREPARER = "adapters.openvino.worker.preparer:preparer_main"
_EXIT_REASONS = {
    PREPARER_EXITED: "the engine's prompt preparer process exited",
    ENGINE_BROKEN: "the engine failed a step and is restarting",
}
"""What the engine process's own exit codes mean (any other is reported with its number)."""


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
        self._max_in_flight = max_in_flight
        self._supervisor = Supervisor(name, "engine", FromEngine, Close(), _EXIT_REASONS, stall_timeout)
        to_preparer, preparer_end = socket_pair()
        engine_args = (self._supervisor.child_end, to_preparer, builder, spec, setup_logging)
        self._supervisor.spawn(_ENGINE, engine_args, f"openarc-engine-{name}")
        self._supervisor.spawn(_PREPARER, (preparer_end, spec, setup_logging), f"openarc-prep-{name}")
        ready: Ready = self._supervisor.handshake(Ready)
        self.output_format = ready.output_format
        """How the model's output is parsed, as the preparer found it in the chat template."""
        self.inference_precision = ready.inference_precision
        """The precision the engine's device computes in, as the engine reported it at load."""
        self._ids = itertools.count(1)
        self._requests: dict[int, asyncio.Queue[list[Event] | AdapterError]] = {}
        self._in_engine: set[int] = set()  # requests the engine still works on (the watchdog's concern)
        self._running = 0
        self.counts = EngineCounts()
        """What the engine counted, as of its last batch."""
        self._supervisor.serve(self._deliver, self._stop_serving, busy=lambda: bool(self._in_engine))

    @property
    def pid(self) -> int | None:
        """The engine process's id."""
        return self._supervisor.pid

    @property
    def pids(self) -> tuple[int, ...]:
        """The engine's and the preparer's process ids."""
        return self._supervisor.pids

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
        await self._supervisor.start(on_failure)

    async def generate(self, params: GenerationParams) -> AsyncIterator[Event]:
        """Submit a request and yield its events; closing the iterator early cancels it in the engine."""
        supervisor = self._supervisor
        if supervisor.down is not None:
            raise EngineUnavailableError(supervisor.down, retry_after=RESTART_RETRY_AFTER)
        if len(self._requests) >= self._max_in_flight:
            raise EngineOverloadedError(retry_after=1)
        await self.start()
        if not supervisor.attached or supervisor.down is not None:
            raise EngineUnavailableError(supervisor.down or "the engine is not running", RESTART_RETRY_AFTER)
        request_id = next(self._ids)
        events: asyncio.Queue[list[Event] | AdapterError] = asyncio.Queue()
        if not self._in_engine:  # an idle engine has had no reason to report: start the clock now
            supervisor.mark_progress()
        self._requests[request_id] = events
        self._in_engine.add(request_id)
        try:
            supervisor.send(Add(request_id, params))
            await supervisor.drain()  # a large prompt: wait for the socket rather than buffer more
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
            reason = supervisor.down or "the engine process exited"
            raise EngineUnavailableError(reason, RESTART_RETRY_AFTER) from None
        finally:
            self._requests.pop(request_id, None)
            if request_id in self._in_engine and supervisor.down is None:
                supervisor.send(Cancel(request_id))
            self._in_engine.discard(request_id)

    async def close(self, reason: str) -> None:
        """Fail every request at once with ``reason``, then stop the engine process."""
        await self._supervisor.close(reason)

    # --- inside ---

    def _deliver(self, message: Any) -> None:
        if not isinstance(message, Batch):
            return
        self._running = message.running
        self.counts = message.counts
        for request_id, outcome in message.outcomes.items():
            ended = not isinstance(outcome, list) or any(isinstance(event, Usage) for event in outcome)
            if ended:
                self._in_engine.discard(request_id)
            queue = self._requests.get(request_id)
            if queue is not None:  # else the consumer already left and the engine was told
                queue.put_nowait(outcome if isinstance(outcome, list) else failure_from_wire(outcome))

    def _stop_serving(self, reason: str) -> None:
        """The engine stopped (it failed, or it is being closed): every request it held ends now."""
        self._running = 0
        for queue in self._requests.values():
            queue.put_nowait(EngineUnavailableError(reason, retry_after=RESTART_RETRY_AFTER))
