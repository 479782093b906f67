"""Reads one JSON call object (``{"name": ..., "arguments": {...}}``) as it arrives, piece by piece:
where a JSON value ends, and when the call can start."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .pieces import CallArguments, CallStart, Piece

_STRING_STOP = re.compile(r'["\\]')
_VALUE_STOP = re.compile(r'["{}\[\],\s]')


class ValueScanner:
    """Finds where one JSON value ends, across pieces, without parsing it: tracks strings, escapes and
    nesting only. A scalar (number, true, false, null) ends just before the first delimiter."""

    __slots__ = ("_depth", "_escape", "_in_string", "_scalar")

    def __init__(self) -> None:
        self._depth = 0
        self._in_string = self._escape = self._scalar = False

    def scan(self, text: str, pos: int) -> int:
        """Read ``text[pos:]``; return the index just past the value, or -1 if it goes on."""
        while pos < len(text):
            if self._in_string:
                pos = self._skip_string(text, pos)
                if pos < 0:
                    return -1
                if not self._in_string and self._depth == 0:
                    return pos
                continue
            match = _VALUE_STOP.search(text, pos)
            if match is None:
                self._scalar = self._scalar or self._depth == 0
                return -1
            i = match.start()
            if self._depth == 0 and (self._scalar or i > pos):
                return i
            pos = i + 1
            char = text[i]
            if char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth <= 0:
                    return pos
        return -1

    def _skip_string(self, text: str, pos: int) -> int:
        if self._escape:
            self._escape = False
            return pos + 1
        match = _STRING_STOP.search(text, pos)
        if match is None:
            return -1
        if match.group() == "\\":
            self._escape = True
        else:
            self._in_string = False
        return match.end()


MORE, DONE, BAD = 0, 1, 2
_WHITESPACE = " \t\r\n"
_ARGUMENT_KEYS = frozenset(("arguments", "parameters"))
# Llama 3.2 sometimes adds "type": "function"; Mistral models may write a call "id".
_SKIPPED_KEYS = frozenset(("type", "id"))
_Step = Callable[[str, int], tuple[int, int]]


class CallObject:
    """One ``{"name": ..., "arguments": {...}}`` object, read as it arrives; pieces go to ``out``."""

    def __init__(self, call: int, out: list[Piece]) -> None:
        self.call = call
        self.started = False
        self._out = out
        self._step: _Step = self._open
        self._name = ""
        self._key = ""
        self._mode = ""  # what the value being read is: key, name, stream, hold, string or skip
        self._parts: list[str] = []
        self._scanner = ValueScanner()
        self._arguments: str | None = None  # held until the call can start

    def feed(self, text: str) -> tuple[int, int]:
        """Read ``text``: (index reached, status); ``MORE`` means all of it was read."""
        pos = 0
        while pos < len(text):
            pos, status = self._step(text, pos)
            if status != MORE:
                return pos, status
        return pos, MORE

    def _open(self, text: str, pos: int) -> tuple[int, int]:
        return self._expect(text, pos, "{", self._member)

    def _colon(self, text: str, pos: int) -> tuple[int, int]:
        return self._expect(text, pos, ":", self._value_start)

    def _expect(self, text: str, pos: int, char: str, then: _Step) -> tuple[int, int]:
        if text[pos] in _WHITESPACE:
            return pos + 1, MORE
        if text[pos] != char:
            return pos, BAD
        self._step = then
        return pos + 1, MORE

    def _member(self, text: str, pos: int) -> tuple[int, int]:
        char = text[pos]
        if char in _WHITESPACE:
            return pos + 1, MORE
        if char == "}":
            return pos + 1, self._close()
        if char != '"':
            return pos, BAD
        self._begin_value("key")
        return pos, MORE

    def _after_value(self, text: str, pos: int) -> tuple[int, int]:
        if text[pos] == "}":
            return pos + 1, self._close()
        return self._expect(text, pos, ",", self._member)

    def _value_start(self, text: str, pos: int) -> tuple[int, int]:
        char = text[pos]
        if char in _WHITESPACE:
            return pos + 1, MORE
        mode = self._mode_for(char)
        if mode is None:
            return pos, BAD
        if mode == "stream":
            self._start()
        self._begin_value(mode)
        return pos, MORE

    def _mode_for(self, char: str) -> str | None:
        if char in ",:}]":
            return None
        if self.started or self._key in _SKIPPED_KEYS:
            return "skip"
        if self._key == "name":
            return "name" if char == '"' else None
        if self._key not in _ARGUMENT_KEYS or self._arguments is not None:
            return None
        if char == "{":
            return "stream" if self._name else "hold"
        return "string" if char == '"' else None

    def _begin_value(self, mode: str) -> None:
        self._mode = mode
        self._parts = []
        self._scanner = ValueScanner()
        self._step = self._value

    def _value(self, text: str, pos: int) -> tuple[int, int]:
        end = self._scanner.scan(text, pos)
        stop = len(text) if end < 0 else end
        if stop > pos:
            if self._mode == "stream":
                self._out.append(CallArguments(self.call, text[pos:stop]))
            elif self._mode != "skip":
                self._parts.append(text[pos:stop])
        return stop, (MORE if end < 0 else self._end_value())

    def _end_value(self) -> int:
        self._step = self._after_value
        text = "".join(self._parts)
        try:
            if self._mode == "key":
                self._key = json.loads(text)
                self._step = self._colon
            elif self._mode == "name":
                self._name = json.loads(text)
                return MORE if self._name else BAD
            elif self._mode in ("hold", "string"):
                return self._take_arguments(json.loads(text) if self._mode == "string" else text)
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deep for json.loads
            return BAD
        return MORE

    def _take_arguments(self, text: Any) -> int:
        if not isinstance(text, str) or not isinstance(json.loads(text), dict):
            return BAD
        self._arguments = text
        if self._name:
            self._start()
            self._out.append(CallArguments(self.call, text))
        return MORE

    def _close(self) -> int:
        if not self.started:
            if not self._name:
                return BAD
            self._start()
            self._out.append(CallArguments(self.call, self._arguments or "{}"))
        return DONE

    def _start(self) -> None:
        self.started = True
        self._out.append(CallStart(self.call, self._name))
