"""``OutputParser``: runs the two stages over a streaming output. The think block is split off first
(``reasoning``); tool calls are then looked for only in the answer after it (``formats``)."""

from __future__ import annotations

from ..base import OutputFormat
from .formats import READERS
from .pieces import CallStart, Content, Piece
from .reasoning import ReasoningSplitter


class OutputParser:
    """Splits one generated output, fed piece by piece, into content, reasoning and tool calls.

    Args:
        output_format: how the model marks reasoning and writes tool calls.
        parse_tools: False when the request cannot call tools (no tools, or tool_choice "none").
        reasoning_open: the prompt already opened the think block (see ``reasoning_opened``).
    """

    def __init__(self, output_format: OutputFormat, parse_tools: bool, reasoning_open: bool = False) -> None:
        reasoning = output_format.reasoning
        self._reasoning = ReasoningSplitter(reasoning, reasoning_open) if reasoning else None
        tool_format = output_format.tool_format if parse_tools else None
        if tool_format is not None and tool_format not in READERS:
            raise ValueError(f"unknown tool call format {tool_format!r}")
        self._tools = READERS[tool_format]() if tool_format else None
        self._made_calls = False

    @property
    def made_calls(self) -> bool:
        """At least one call has started (the finish reason is then "tool_calls")."""
        return self._made_calls

    def feed(self, text: str) -> list[Piece]:
        """The pieces ``text`` completes; some of it may be held back until the next feed."""
        if self._reasoning is not None:
            return self._read_tools(self._reasoning.feed(text), final=False)
        return self._read_tools([Content(text)] if text else [], final=False)

    def finish(self) -> list[Piece]:
        """End of output: everything still held back."""
        return self._read_tools(self._reasoning.finish() if self._reasoning else [], final=True)

    def _read_tools(self, pieces: list[Piece], final: bool) -> list[Piece]:
        if self._tools is None:
            return pieces
        out: list[Piece] = []
        for piece in pieces:
            out.extend(self._tools.feed(piece.text) if isinstance(piece, Content) else (piece,))
        if final:
            out.extend(self._tools.finish())
        self._made_calls = self._made_calls or any(isinstance(piece, CallStart) for piece in out)
        return out
