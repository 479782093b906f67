r"""Splits the think block off the start of the output.

Reasoning text is trimmed of surrounding whitespace and the answer after a think block of its leading
whitespace (templates write ``<think>\n...\n</think>\n\n``). A think block is only recognised at the
very start of the output, so later ``<think>`` text is content; when the prompt opened the block, the
output starts inside it (and an open tag the model repeats is dropped).
"""

from __future__ import annotations

from collections.abc import Callable

from ..base import ReasoningFormat
from .pieces import Content, Piece, Reasoning
from .tags import is_partial, partial_tail


class ReasoningSplitter:
    """Splits the think block off the start of the output; everything after it is content."""

    def __init__(self, reasoning: ReasoningFormat, opened: bool) -> None:
        self._open, self._close = reasoning.open_tag, reasoning.close_tag
        self._held = ""
        self._trim = True  # drop the whitespace that opens the reasoning, and the answer after it
        self._opened = opened
        self._state: Callable[[list[Piece]], None] = self._before

    def feed(self, text: str) -> list[Piece]:
        """The pieces ``text`` completes; what may be part of a tag, or whitespace to trim, is held back
        until the next feed."""
        out: list[Piece] = []
        self._held += text
        self._state(out)
        return out

    def finish(self) -> list[Piece]:
        """End of output: what is still held back (the text of a block never closed is reasoning)."""
        held, self._held = self._held, ""
        if self._state == self._after or not held:
            return []
        if self._state == self._before and not self._opened:
            return [Content(held)]
        # In the block: trailing whitespace was held to be trimmed; a cut-off tag is reasoning text.
        held = held.rstrip() if self._state == self._inside else held.strip()
        return [Reasoning(held)] if held else []

    def _before(self, out: list[Piece]) -> None:
        text = self._held.lstrip()
        if text.startswith(self._open):
            # When the prompt opened the block, a model that writes the tag again only repeats it.
            self._held = text[len(self._open) :]
            self._state = self._inside
            self._inside(out)
        elif not is_partial(text, self._open):
            # No open tag: inside the block the prompt opened, else no block and the text is untouched.
            self._trim = self._opened
            self._state = self._inside if self._opened else self._after
            self._state(out)

    def _inside(self, out: list[Piece]) -> None:
        text = self._held
        if self._trim:
            text = self._held = text.lstrip()
            if not text:
                return
            self._trim = False
        end = text.find(self._close)
        if end >= 0:
            if body := text[:end].rstrip():
                out.append(Reasoning(body))
            self._held, self._trim = text[end + len(self._close) :], True
            self._state = self._after
            self._after(out)
            return
        # Hold back trailing whitespace too: it is trimmed if the close tag comes next.
        body = text[: len(text) - partial_tail(text, self._close)].rstrip()
        if body:
            out.append(Reasoning(body))
        self._held = text[len(body) :]

    def _after(self, out: list[Piece]) -> None:
        text, self._held = self._held, ""
        if self._trim:
            text = text.lstrip()
            self._trim = not text
        if text:
            out.append(Content(text))
