"""Splits a model's generated text into content, reasoning and tool calls while it streams.

``OutputParser.feed`` (``parser``) runs in the engine process once per generated piece, and pieces split
anywhere: inside a tag, inside a JSON string, between two calls. So every reader here is a small state
machine over the text not yet decided, holding back only the shortest tail that could still become a
tag (``tags``). Two stages run in order: the think block is split off first (``reasoning``; tool calls
are only looked for in the answer after it), then the answer is read for calls in the model's own syntax
(``formats``, which read each JSON call object with ``json_scan``); what comes out is ``pieces``.
``templates`` tells which format a model writes, and ``constraints`` builds the grammar that forces a
call the parser then reads back (in ``DEFAULT_FORCED_FORMAT`` for a model with no syntax of its own).
"""

from .constraints import DEFAULT_FORCED_FORMAT, forced_call_constraint
from .parser import OutputParser
from .pieces import CallArguments, CallStart, Content, Piece, Reasoning
from .templates import detect_output_format, reasoning_opened

__all__ = [
    "DEFAULT_FORCED_FORMAT",
    "CallArguments",
    "CallStart",
    "Content",
    "OutputParser",
    "Piece",
    "Reasoning",
    "detect_output_format",
    "forced_call_constraint",
    "reasoning_opened",
]
