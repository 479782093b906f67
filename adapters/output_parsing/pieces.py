"""The pieces ``OutputParser`` splits an output into."""

from __future__ import annotations

import msgspec


class Content(msgspec.Struct, frozen=True):
    """Answer text."""

    text: str


class Reasoning(msgspec.Struct, frozen=True):
    """Text from inside the think block, tags removed."""

    text: str


class CallStart(msgspec.Struct, frozen=True):
    """Tool call ``call`` (0-based within this output) names its function."""

    call: int
    name: str


class CallArguments(msgspec.Struct, frozen=True):
    """More of call ``call``'s JSON arguments text."""

    call: int
    text: str


Piece = Content | Reasoning | CallStart | CallArguments
