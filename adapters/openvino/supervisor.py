"""One supervisor for every child process a model runs: spawn, handshake, liveness, fail once, close.

A chat model runs an engine process and its prompt preparer; an embedding or rerank model runs an
encoder process. Each is watched the same way, so it is written once, here: end-of-file on the channel
means the main child exited however it died (its exit code says why, in the owner's words); an optional
watchdog kills it when it goes silent past ``stall_timeout`` while the owner has work in it. Either way
the owner fails its in-flight work at once, then ``on_failure(reason)`` tells the registry, which
restarts the model with backoff (``gateway.registry``).

This module runs in the server process: it imports neither OpenVINO nor ``adapters.openvino.worker``.
Children are named by entry point (``"module:function"``) and imported only inside the child, through
``_run_entry``, so the server never loads the worker package.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..base import ModelLoadError
from ..channel import AsyncFrames, BlockingFrames, ChannelClosedError, LoadFailed, socket_pair

logger = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")  # fork would copy the server's threads and locks


def _run_entry(entry: str, *args: Any) -> None:
    """A child's target: import ``entry`` (``module:function``) in the child and call it with ``args``."""
    module_name, _, function_name = entry.partition(":")
    getattr(importlib.import_module(module_name), function_name)(*args)


class Supervisor:
    """Owns one model's child processes and the channel socket to the main one, for the owner's life.

    The owner (``EngineProcess``, ``EncoderAdapter``) keeps what is particular to it: its messages, its
    in-flight work and how to fail it. The first child spawned is the main one: it holds the other end of
    the channel, its pid is the model's, and its exit code is mapped to a reason.
    """

    def __init__(
        self,
        name: str,
        role: str,
        receives: Any,
        shutdown: Any,
        exit_reasons: Mapping[int, str] | None = None,
        stall_timeout: float | None = None,
    ):
        """Prepare the channel; nothing runs until ``spawn``.

        Args:
            name: the model id, for logs.
            role: what the main child is called in reasons and logs (``"engine"``, ``"encoder"``).
            receives: the type (a union of msgspec Structs) of the messages the main child sends.
            shutdown: the message that asks the main child to finish and exit.
            exit_reasons: the reason to report for an exit code of the main child (others are reported
                as "exited (exit code N)").
            stall_timeout: seconds of silence while ``busy()`` after which the main child is taken for
                stuck and killed; ``None``: no watchdog.
        """
        self._name = name
        self._role = role
        self._receives = receives
        self._shutdown = shutdown
        self._exit_reasons = dict(exit_reasons or {})
        self._stall_timeout = stall_timeout
        self._socket, self._child_end = socket_pair()
        self._children: list[Any] = []
        self._frames: AsyncFrames | None = None
        self._tasks: list[asyncio.Task] = []
        self._attaching: asyncio.Future | None = None
        self._on_message: Callable[[Any], None] = lambda message: None
        self._on_stop: Callable[[str], None] = lambda reason: None
        self._busy: Callable[[], bool] = lambda: False
        self._on_failure: Callable[[str], None] | None = None
        self._last_progress = time.monotonic()
        self._down: str | None = None

    # --- start ---

    @property
    def child_end(self) -> socket.socket:
        """The main child's end of the channel: pass it among the first ``spawn``'s arguments."""
        return self._child_end

    def spawn(self, entry: str, args: tuple[Any, ...], process_name: str) -> None:
        """Start a child running ``entry`` (``"module:function"``) with ``args``.

        Sockets among ``args`` are closed here once the child has its own copies, so end-of-file reaches
        each remaining end as soon as the process holding the other one dies.
        """
        process = _SPAWN.Process(target=_run_entry, args=(entry, *args), name=process_name, daemon=True)
        process.start()
        self._children.append(process)
        for arg in args:
            if isinstance(arg, socket.socket):
                arg.close()

    def handshake(self, ready: type) -> Any:
        """Wait (blocking) for the main child's first message and return it if it is a ``ready``;
        otherwise stop the children and raise ``ModelLoadError`` with the child's reason."""
        died = False
        try:
            message = BlockingFrames(self._socket, self._receives).recv()
        except ChannelClosedError:
            died = True
            self._main.join(timeout=5)
            code = self._main.exitcode
            message = LoadFailed(f"the {self._role} process exited during load (exit code {code})")
        if isinstance(message, ready):
            return message
        self._socket.close()
        self._reap(30)
        if isinstance(message, LoadFailed):
            raise ModelLoadError(message.reason, transient=died)
        raise ModelLoadError(f"the {self._role} process answered {type(message).__name__} instead of ready")

    def serve(
        self,
        on_message: Callable[[Any], None],
        on_stop: Callable[[str], None],
        busy: Callable[[], bool] | None = None,
    ) -> None:
        """Name the owner's handlers: ``on_message`` for each message after the handshake, ``on_stop`` to
        fail the owner's in-flight work (on failure or close), ``busy`` for whether the main child owes
        the owner progress (the watchdog's concern)."""
        self._on_message = on_message
        self._on_stop = on_stop
        if busy is not None:
            self._busy = busy

    async def start(self, on_failure: Callable[[str], None] | None = None) -> None:
        """Attach the channel to the running loop and start watching the children (idempotent)."""
        if on_failure is not None:
            self._on_failure = on_failure
        if self._attaching is None:  # the first caller attaches; any caller meanwhile waits for it
            self._attaching = asyncio.ensure_future(self._attach())
        await asyncio.shield(self._attaching)

    async def _attach(self) -> None:
        self._frames = await AsyncFrames.attach(self._socket, self._receives)
        self._tasks = [asyncio.create_task(self._read_loop(), name=f"{self._role}-reader-{self._name}")]
        if self._stall_timeout is not None:
            watchdog = asyncio.create_task(self._watchdog(), name=f"{self._role}-watchdog-{self._name}")
            self._tasks.append(watchdog)

    # --- serving ---

    @property
    def pid(self) -> int | None:
        """The main child's process id."""
        return self._main.pid

    @property
    def pids(self) -> tuple[int, ...]:
        """Every child's process id, the main one first (for reading their memory)."""
        return tuple(child.pid for child in self._children if child.pid is not None)

    @property
    def attached(self) -> bool:
        """Whether ``start`` has attached the channel (messages can be sent)."""
        return self._frames is not None

    @property
    def down(self) -> str | None:
        """Why the children stopped serving, once they have (``None`` while they serve)."""
        return self._down

    def send(self, message: Any) -> None:
        """Queue a message to the main child (after ``start``); it never blocks the loop."""
        assert self._frames is not None
        self._frames.send(message)

    async def drain(self) -> None:
        """Wait until the channel's write buffer is below its high-water mark (back-pressure)."""
        assert self._frames is not None
        await self._frames.drain()

    def mark_progress(self) -> None:
        """Restart the stall clock: call it when work enters an idle child, which had no reason to report."""
        self._last_progress = time.monotonic()

    async def close(self, reason: str) -> None:
        """Ask the main child to finish, fail the owner's work with ``reason``, then reap the children
        (killing any still alive after 30 s)."""
        if self._down is None:
            try:  # before _stop closes the stream; the transport flushes it before closing
                if self._frames is not None:
                    self._frames.send(self._shutdown)
                else:
                    BlockingFrames(self._socket, self._receives).send(self._shutdown)
            except OSError:
                pass
        self._stop(reason)
        await asyncio.to_thread(self._reap, 30)

    def kill(self) -> None:
        """Kill every child still alive (a stuck one, or one whose channel can no longer be trusted)."""
        for process in self._children:
            if process.is_alive():
                process.kill()

    # --- inside ---

    @property
    def _main(self) -> Any:
        return self._children[0]

    async def _read_loop(self) -> None:
        assert self._frames is not None
        try:
            while True:
                message = await self._frames.recv()
                self._last_progress = time.monotonic()
                self._on_message(message)
        except ChannelClosedError:
            if self._down is None:
                await asyncio.to_thread(self._main.join, 2)
                code = self._main.exitcode
                exited = f"the {self._role} process exited (exit code {code})"
                self._fail(self._exit_reasons.get(code, exited))
        except Exception:  # a message we cannot read means the stream can no longer be trusted
            logger.exception("%s channel of %s failed", self._role, self._name)
            self.kill()
            self._fail(f"the {self._role} channel failed")

    async def _watchdog(self) -> None:
        assert self._stall_timeout is not None
        while self._down is None:
            await asyncio.sleep(min(1.0, self._stall_timeout / 4))
            silent = time.monotonic() - self._last_progress
            if self._busy() and silent > self._stall_timeout:
                self.kill()
                self._fail(
                    f"the {self._role} made no progress for {silent:.0f} s (stall_timeout) and was stopped"
                )

    def _fail(self, reason: str) -> None:
        """The main child died or stalled: end the owner's work now and tell the registry, once."""
        if self._down is not None:
            return
        logger.error("%s of %s: %s", self._role, self._name, reason)
        self._stop(reason)
        if self._on_failure is not None:
            self._on_failure(reason)

    def _stop(self, reason: str) -> None:
        if self._down is None:
            self._down = reason
        self._on_stop(reason)
        current = asyncio.current_task()  # always on the loop: from close() or a watcher task
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self._frames is not None:
            self._frames.close()

    def _reap(self, timeout: float) -> None:
        """Wait for every child to exit (they do once the main one is told to close or dies)."""
        for process in self._children:
            process.join(timeout=timeout)
            if process.is_alive():
                logger.warning("%s did not stop in %.0f s; killing it", process.name, timeout)
                process.kill()
                process.join(timeout=10)
        if self._frames is None:
            self._socket.close()
