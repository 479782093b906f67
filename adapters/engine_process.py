"""Runs an engine in a process of its own and talks to it through a pipe.

Why a process: openvino-genai's ``ContinuousBatchingPipeline.step()`` holds the GIL for the whole step.
Measured here with the engine on a thread (demo model, 8 streams, 2 cores): a 1 ms asyncio sleep
overslept by 66 ms at p50 and 626 ms at worst, the length of a step, so every HTTP read, write and
health check waited for inference. In its own process the engine cannot block the event loop.

The server side (``EngineProcess``) imports no OpenVINO; the engine process loads the model with a
builder named by import path, runs ``add``/``cancel``/``step`` and sends back, once per step, every
request's new events and the count of running requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import itertools
import logging
import multiprocessing
import threading
from collections.abc import AsyncIterator
from typing import Any

from . import base
from .base import (
    AdapterError,
    EngineOverloadedError,
    Event,
    GenerationFailedError,
    GenerationParams,
    ModelLoadError,
    Usage,
    first_line,
)

logger = logging.getLogger(__name__)

_WIRE_ERRORS = {
    cls.__name__: cls
    for cls in (
        base.PromptTooLongError,
        base.EngineOverloadedError,
        base.ModelLoadError,
        base.GenerationFailedError,
        base.InvalidConversationError,
    )
}


def _error_to_wire(error: AdapterError) -> tuple[str, str, dict]:
    # Dataclass exceptions do not survive pickling (BaseException.__reduce__ passes no fields): send fields.
    return ("error", type(error).__name__, dataclasses.asdict(error))


def _outcome_from_wire(outcome: Any) -> list[Event] | AdapterError:
    if isinstance(outcome, tuple) and outcome and outcome[0] == "error":
        _, name, fields = outcome
        return _WIRE_ERRORS.get(name, GenerationFailedError)(**fields)
    return outcome


class EngineProcess:
    """The server's handle on one engine process: admission control, request routing, cancellation."""

    def __init__(self, name: str, builder: str, spec: Any, max_in_flight: int, log_level: int | str = "INFO"):
        """Start the process and wait until the model is loaded; ``ModelLoadError`` if it cannot be."""
        context = multiprocessing.get_context("spawn")  # fork would copy the server's threads and locks
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=_engine_main,
            args=(child_conn, builder, spec, log_level),
            name=f"openarc-engine-{name}",
            daemon=True,
        )
        self._process.start()
        child_conn.close()
        try:
            ready = self._conn.recv()
        except EOFError:
            self._process.join(timeout=5)
            ready = ("failed", f"the engine process exited during load (exit code {self._process.exitcode})")
        if ready[0] != "ready":
            self._process.join(timeout=30)
            raise ModelLoadError(ready[1])
        self._name = name
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._running = 0
        self._ids = itertools.count(1)
        self._requests: dict[int, asyncio.Queue[list[Event] | AdapterError]] = {}
        self._send_lock = threading.Lock()
        self._closing = False
        self._alive = True
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def in_flight(self) -> int:
        """Requests accepted and not yet finished or released."""
        return self._in_flight

    @property
    def running(self) -> int:
        """Requests the engine reported generating after its last step."""
        return self._running

    async def generate(self, params: GenerationParams) -> AsyncIterator[Event]:
        """Submit a request and yield its events; closing the iterator early cancels it in the engine."""
        if not self._alive:
            raise GenerationFailedError("the engine process is not running")
        if self._in_flight >= self._max_in_flight:
            raise EngineOverloadedError(retry_after=1)
        self._watch_pipe()
        request_id = next(self._ids)
        events: asyncio.Queue[list[Event] | AdapterError] = asyncio.Queue()
        self._requests[request_id] = events
        self._in_flight += 1
        finished = False
        try:
            self._send(("add", request_id, params))
            while not finished:
                outcome = await events.get()
                if isinstance(outcome, AdapterError):
                    finished = True  # the engine has already dropped the request
                    raise outcome
                for event in outcome:
                    finished = isinstance(event, Usage)
                    yield event
        finally:
            self._in_flight -= 1
            self._requests.pop(request_id, None)
            if not finished and self._alive:
                self._send(("cancel", request_id))

    def close(self) -> None:
        """Stop the engine process (blocking; call it from a worker thread or after the loop stopped)."""
        self._closing = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.remove_reader, self._conn.fileno())
        if self._alive:
            try:
                self._send(("close",))
            except OSError:
                pass
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=10)
        self._conn.close()

    def _send(self, message: tuple) -> None:
        with self._send_lock:
            self._conn.send(message)

    def _watch_pipe(self) -> None:
        """Read the engine's messages on the event loop itself, woken by the pipe becoming readable.

        The loop is the server's, known only once the first request runs. Reading here rather than on
        a reader thread saves a thread hand-off and a GIL switch on every engine step.
        """
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._conn.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        try:
            while self._conn.poll(0):
                _, outcomes, running = self._conn.recv()
                self._running = running
                for request_id, outcome in outcomes.items():
                    queue = self._requests.get(request_id)
                    if queue is not None:  # else the consumer already left and the engine was told
                        queue.put_nowait(_outcome_from_wire(outcome))
        except (EOFError, OSError):
            self._engine_gone()

    def _engine_gone(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._conn.fileno())
        self._alive = False
        self._running = 0
        if not self._closing:
            code = self._process.exitcode
            logger.error("the engine process of %s exited unexpectedly (exit code %s)", self._name, code)
        for queue in self._requests.values():
            queue.put_nowait(GenerationFailedError("the engine process exited"))


# --- the engine process ---


def _engine_main(conn: Any, builder: str, spec: Any, log_level: int | str) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module_name, _, function_name = builder.partition(":")
    try:
        engine = getattr(importlib.import_module(module_name), function_name)(spec)
    except AdapterError as exc:
        conn.send(("failed", str(exc)))
        return
    except Exception as exc:  # any load failure becomes one line for the operator, with the log for details
        logger.exception("model load failed")
        conn.send(("failed", f"could not load the model: {first_line(exc)}"))
        return
    conn.send(("ready",))
    _EngineLoop(conn, engine).run()


class _EngineLoop:
    """Receive commands, step the engine, send what it produced; block only when there is nothing to do."""

    def __init__(self, conn: Any, engine: Any):
        self.conn = conn
        self.engine = engine
        self.closing = False
        self.reported_running = 0
        if hasattr(engine, "pump"):  # the sequential engine exchanges messages between tokens
            engine.pump = self.exchange

    def run(self) -> None:
        while not self.closing:
            self.receive(block=not self.engine.busy)
            if self.engine.busy and not self.closing:
                self.engine.step()
            self.send()
        self.engine.close()

    def exchange(self) -> None:
        self.send()
        self.receive(block=False)
        if self.closing:
            self.engine.close()

    def receive(self, block: bool) -> None:
        timeout = None if block else 0
        while not self.closing and self.conn.poll(timeout):
            timeout = 0
            try:
                message = self.conn.recv()
            except EOFError:  # the server is gone
                self.closing = True
                return
            if message[0] == "add":
                self.engine.add(message[1], message[2])
            elif message[0] == "cancel":
                self.engine.cancel(message[1])
            elif message[0] == "close":
                self.closing = True

    def send(self) -> None:
        outbox = self.engine.take_outbox()
        running = self.engine.running
        if outbox or running != self.reported_running:
            wire = {rid: _error_to_wire(o) if isinstance(o, AdapterError) else o for rid, o in outbox.items()}
            self.conn.send(("batch", wire, running))
            self.reported_running = running
