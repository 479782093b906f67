"""The prompt preparer: a process beside each engine that templates and tokenizes requests.

Why a process of its own: openvino-genai's chat template and tokenizer calls hold the GIL, and so does
the engine's ``step()``, so on a thread they would still run between two steps. Measured on the
demo model (2 cores): a request of 20,000 messages costs 0.14 s of templating and 0.08 s of
tokenizing, and with that work on the step loop the 8 streams running beside it saw inter-token gaps
of up to 0.9 s (p95 0.79 s, against a p50 of 0.1 s); see ``python -m bench.huge_prompt``.

The engine forwards each ``Add`` here and receives ``Prepared`` (token ids and completion budget) or
``Rejected``. A reader thread takes requests off the socket as they come, so the engine's send of a
large request never waits on this process's own replies (two blocking senders could otherwise wait
on each other). End-of-file means the engine is gone: the preparer exits.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

from ..base import AdapterError, InvalidConversationError, first_line
from ..channel import (
    Add,
    BlockingFrames,
    ChannelClosedError,
    LoadFailed,
    Prepared,
    Ready,
    Rejected,
    failure_to_wire,
)

logger = logging.getLogger(__name__)


def preparer_main(sock: socket.socket, spec: Any, setup_logging: Callable[[], None]) -> None:
    """Load the model's tokenizer (with its chat template), then prepare requests until end-of-file."""
    setup_logging()
    frames = BlockingFrames(sock, Add)
    try:
        import openvino_genai as ov_genai

        from .prompt import prepare_prompt

        tokenizer = ov_genai.Tokenizer(str(spec.path))
        state: Ready | LoadFailed = Ready()
    except Exception as exc:  # the engine reports it as the model's load failure
        logger.exception("the prompt preparer could not load the tokenizer")
        state = LoadFailed(f"could not load the tokenizer: {first_line(exc)}")
    else:
        if spec.chat_template is not None:
            state = _use_chat_template(tokenizer, spec.chat_template)
    try:
        frames.send(state)
    except OSError:  # the engine already gave up (its own load failed): nothing to prepare for
        return
    if isinstance(state, LoadFailed):
        return
    inbox: queue.SimpleQueue[Add | None] = queue.SimpleQueue()
    threading.Thread(target=_read, args=(frames, inbox), name="preparer-reader", daemon=True).start()
    while (message := inbox.get()) is not None:
        try:
            prompt, budget = prepare_prompt(tokenizer, message.params, spec.context_length)
            settings = dataclasses.replace(message.params, messages=(), tools=())
            reply: Prepared | Rejected = Prepared(message.request_id, prompt, budget, settings)
        except AdapterError as exc:
            reply = Rejected(message.request_id, failure_to_wire(exc))
        except Exception as exc:  # whatever this request does, the preparer keeps serving the others
            logger.exception("preparing request %d failed", message.request_id)
            error = InvalidConversationError(f"the prompt could not be prepared: {first_line(exc)}")
            reply = Rejected(message.request_id, failure_to_wire(error))
        try:
            frames.send(reply)
        except OSError:
            return


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


def _read(frames: BlockingFrames, inbox: queue.SimpleQueue) -> None:
    try:
        while True:
            inbox.put(frames.recv())
    except (ChannelClosedError, OSError):
        inbox.put(None)
