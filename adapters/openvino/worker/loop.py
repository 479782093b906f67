"""The engine process: load the model, then receive requests, step the engine and send what it made.

Runs in a process of its own (see ``process``). A request's prompt goes to the prompt preparer (a
process beside this one, see ``prep``) and comes back as token ids, so templating and tokenizing a
huge prompt never delays a step. The loop blocks only when it has nothing to do; while it has work it
reports after every step that produced something, and at least every ``HEARTBEAT_SECONDS``, so the
server's watchdog can tell a slow engine from a stuck one. End-of-file on either channel (the server
or the preparer is gone) stops the engine.
"""

from __future__ import annotations

import importlib
import logging
import select
import socket
import time
from collections.abc import Callable
from typing import Any

import msgspec

from ...base import AdapterError, PromptTokens, Usage, first_line
from ...channel import (
    ENGINE_BROKEN,
    PREPARER_EXITED,
    Batch,
    BlockingFrames,
    Cancel,
    ChannelClosedError,
    Close,
    Counted,
    EngineInbox,
    ForwardedAdd,
    FromPreparer,
    LoadFailed,
    Prepared,
    Rejected,
    failure_from_wire,
    failure_to_wire,
)
from .engine import EngineBrokenError, SteppedEngine

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0
"""Longest silence while the engine has work, so a long prefill is not taken for a stall."""


def engine_main(
    sock: socket.socket,
    preparer_sock: socket.socket,
    builder: str,
    spec: Any,
    setup_logging: Callable[[], None],
) -> None:
    """The engine process's entry point: ``builder`` (``module:function``) loads ``spec`` into an engine."""
    setup_logging()
    frames = BlockingFrames(sock, EngineInbox)
    preparer = BlockingFrames(preparer_sock, FromPreparer)
    module_name, _, function_name = builder.partition(":")
    try:
        engine = getattr(importlib.import_module(module_name), function_name)(spec)
    except AdapterError as exc:
        frames.send(LoadFailed(str(exc)))
        return
    except Exception as exc:  # any load failure becomes one line for the operator, with the log for details
        logger.exception("model load failed")
        frames.send(LoadFailed(f"could not load the model: {first_line(exc)}"))
        return
    try:
        preparer_state = preparer.recv()  # it loaded the tokenizer while the engine loaded the model
    except ChannelClosedError:
        preparer_state = LoadFailed("the prompt preparer exited during load")
    if isinstance(preparer_state, LoadFailed):
        frames.send(preparer_state)
        return
    # Ready carries the output format the preparer found, and the precision the engine computes in.
    frames.send(msgspec.structs.replace(preparer_state, inference_precision=engine.inference_precision))
    engine.output_format = preparer_state.output_format
    loop = EngineLoop(frames, preparer, engine)
    try:
        loop.run()
    except EngineBrokenError:
        loop.send()  # the failed requests learn why before the process goes
        raise SystemExit(ENGINE_BROKEN) from None
    except (ChannelClosedError, BrokenPipeError, ConnectionResetError) as exc:
        logger.info("engine channel closed (%s); stopping", exc)
        engine.close()


class EngineLoop:
    """Receive commands, step the engine, send what it produced; block only when there is nothing to do."""

    def __init__(self, frames: BlockingFrames, preparer: BlockingFrames, engine: SteppedEngine):
        self.frames = frames
        self.preparer = preparer
        self.engine = engine
        self.preparing: set[int] = set()  # requests whose prompts the preparer has
        self.closing = False
        self.reported_running = 0
        self.last_report = time.monotonic()
        engine.pump = self.exchange

    def run(self) -> None:
        """Serve until ``Close``: take commands (waiting only while the engine is idle), step, report; then
        close the engine."""
        while not self.closing:
            if self.engine.busy:
                wait = 0.0
            else:  # idle; but while prompts are being prepared, keep reporting that the loop lives
                wait = HEARTBEAT_SECONDS if self.preparing else None
            self.receive(wait)
            if self.engine.busy and not self.closing:
                self.engine.step()
            self.send()
        self.engine.close()

    def exchange(self) -> None:
        """Between two tokens of a sequential generation: report, and take new commands."""
        self.send()
        self.receive(0)
        if self.closing:
            self.engine.close()

    def receive(self, timeout: float | None) -> None:
        """Handle every message waiting on either channel, waiting up to ``timeout`` for the first."""
        while not self.closing:
            readable, _, _ = select.select([self.frames, self.preparer], [], [], timeout)
            if not readable:
                return
            timeout = 0
            if self.frames in readable:
                self.from_server(self.frames.recv())
            if self.preparer in readable:
                try:
                    message = self.preparer.recv()
                except ChannelClosedError:
                    logger.error("the prompt preparer exited; stopping the engine")
                    self.engine.close()
                    raise SystemExit(PREPARER_EXITED) from None
                self.from_preparer(message)

    def from_server(self, message: Any) -> None:
        """Handle a server command: a new request goes to the preparer, a cancel to whichever process holds
        the request, ``Close`` ends the loop."""
        if isinstance(message, ForwardedAdd):
            self.preparing.add(message.request_id)
            self.preparer.send(message)
        elif isinstance(message, Cancel):
            if message.request_id in self.preparing:  # forget it; its prepared prompt will be dropped
                self.preparing.discard(message.request_id)
            else:
                self.engine.cancel(message.request_id)
        elif isinstance(message, Close):
            self.closing = True

    def from_preparer(self, message: Any) -> None:
        """Give a prepared prompt to the engine, or emit a counted prompt or a rejection; a request cancelled
        while it was being prepared is dropped."""
        if message.request_id not in self.preparing:
            return  # cancelled while it was being prepared
        self.preparing.discard(message.request_id)
        if isinstance(message, Prepared):
            self.engine.add(message)
        elif isinstance(message, Counted):  # a prompt_only request: it never reaches the pipeline
            counted = [PromptTokens(message.prompt, message.text), Usage(len(message.prompt), 0)]
            self.engine.emit(message.request_id, counted)
        elif isinstance(message, Rejected):
            self.engine.emit(message.request_id, failure_from_wire(message.failure))

    def send(self) -> None:
        """Send the outbox, running count and engine counts when there is news or a heartbeat is due."""
        outbox = self.engine.take_outbox()
        running = self.engine.running
        now = time.monotonic()
        working = self.engine.busy or self.preparing
        heartbeat_due = working and now - self.last_report >= HEARTBEAT_SECONDS
        if outbox or running != self.reported_running or heartbeat_due:
            outcomes = {
                rid: failure_to_wire(o) if isinstance(o, AdapterError) else o for rid, o in outbox.items()
            }
            self.frames.send(Batch(outcomes, running, self.engine.counts))
            self.reported_running = running
            self.last_report = now
