"""Tool call readers, one per syntax a model writes calls in: hermes, llama3_json and mistral.

Rules the readers share:

- Ordinary text is never swallowed: a tag that turns out not to be one, a call whose JSON is malformed,
  has no name or has keys a call does not have, and a call cut off before it started, all come back as
  ``Content``, unchanged.
- A call starts (``CallStart``) once its name is known *and* its arguments begin (or the object closes
  without any). Waiting those few characters means a JSON answer that merely has a "name" key is
  content, not half a call. Arguments written before the name are held and the call is emitted whole.
- Arguments are streamed raw as the model wrote them, so a call's ``CallArguments`` concatenate to its
  arguments object text; arguments given as a JSON string are decoded; no arguments give ``"{}"``.
- A call that has started and then turns out malformed, or is cut off, keeps what was emitted and is
  closed there, as vLLM does: its arguments text may then not be valid JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .json_scan import BAD, DONE, MORE, CallObject, ValueScanner
from .pieces import CallArguments, CallStart, Content, Piece
from .tags import is_partial, partial_tail


class _ToolReader:
    """What every format shares: the text not yet decided, the output, and the call being read."""

    def __init__(self) -> None:
        self._buf = ""
        # Text of a call region not committed yet (content again if it is not a call); a list, since
        # arguments written before the name are held whole.
        self._raw: list[str] = []
        self._out: list[Piece] = []
        self._calls = 0
        self._object: CallObject | None = None
        self._state: Callable[[], bool] = self._begin

    def feed(self, text: str) -> list[Piece]:
        self._buf += text
        # Each state returns False when it needs more text, True when it moved on.
        while self._buf and self._state():
            pass
        return self._take()

    def finish(self) -> list[Piece]:
        self._flush()
        self._content("".join(self._raw) + self._buf)
        self._raw, self._buf = [], ""
        return self._take()

    def _take(self) -> list[Piece]:
        # Emptied in place: the call object being read appends to this same list.
        out = self._out.copy()
        self._out.clear()
        return out

    def _begin(self) -> bool:
        raise NotImplementedError

    def _text(self) -> bool:
        raise NotImplementedError

    def _flush(self) -> None:
        """Close what a cut-off output left open (format hook)."""

    def _content(self, text: str) -> None:
        if not text:
            return
        if self._out and isinstance(self._out[-1], Content):
            self._out[-1] = Content(self._out[-1].text + text)
        else:
            self._out.append(Content(text))

    def _fail(self) -> None:
        """The call region is not a call: its text is content, and reading resumes after it."""
        self._content("".join(self._raw))
        self._raw = []
        self._state = self._text

    def _hold(self, text: str) -> None:
        if text:
            self._raw.append(text)

    def _skip_whitespace(self) -> str:
        """Move leading whitespace into the call region's text; return what is left."""
        buf = self._buf.lstrip()
        self._hold(self._buf[: len(self._buf) - len(buf)])
        self._buf = buf
        return buf

    def _new_object(self) -> None:
        self._object = CallObject(self._calls, self._out)

    def _open_object(self, then: Callable[[], bool]) -> bool:
        """A state: a call object must open here (else the region is content); ``then`` reads it."""
        buf = self._skip_whitespace()
        if not buf:
            return False
        if buf[0] != "{":
            self._fail()
            return True
        self._new_object()
        self._state = then
        return True

    def _read_call(self, then: Callable[[], bool]) -> bool:
        """A state: feed the open call object; once it closes, go on with ``then``."""
        status = self._read_object()
        if status == DONE:
            self._state = then
        return status != MORE

    def _read_object(self) -> int:
        """Feed the call object: ``MORE``, ``DONE`` (a call, maybe cut short) or ``BAD`` (content)."""
        assert self._object is not None
        pos, status = self._object.feed(self._buf)
        started = self._object.started
        if started:
            self._raw = []
        else:
            self._hold(self._buf[:pos])
        self._buf = self._buf[pos:]
        if status == MORE:
            return MORE
        self._object = None
        if started:
            self._calls += 1
            return DONE
        self._fail()
        return BAD


class _TaggedReader(_ToolReader):
    """Formats whose calls follow a start tag anywhere in the answer."""

    start_tag = ""
    end_tag = ""

    def _begin(self) -> bool:
        self._state = self._text
        return True

    def _text(self) -> bool:
        buf, tag = self._buf, self.start_tag
        i = buf.find(tag)
        if i < 0:
            keep = len(buf) - partial_tail(buf, tag)
            self._content(buf[:keep])
            self._buf = buf[keep:]
            return False
        self._content(buf[:i])
        self._raw, self._buf = [tag], buf[i + len(tag) :]
        self._state = self._call_begin
        return True

    def _call_begin(self) -> bool:
        raise NotImplementedError

    def _after(self) -> bool:
        """Between and after calls: whitespace is dropped, and so is a leftover end tag."""
        buf = self._buf = self._buf.lstrip()
        if self.end_tag and buf.startswith(self.end_tag):
            self._buf = buf[len(self.end_tag) :]
            return True
        if is_partial(buf, self.start_tag) or (self.end_tag and is_partial(buf, self.end_tag)):
            return False
        self._state = self._text
        return True


class _HermesReader(_TaggedReader):
    r"""``<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>``, repeated (Qwen, Hermes)."""

    start_tag, end_tag = "<tool_call>", "</tool_call>"

    def _call_begin(self) -> bool:
        self._new_object()
        self._state = self._call
        return True

    def _call(self) -> bool:
        status = self._read_object()
        if status == DONE:
            self._state = self._after
        return status != MORE


_MISTRAL_NAME = re.compile(r"[\w.\-]*")
_MISTRAL_ARGS = "[ARGS]"


class _MistralReader(_TaggedReader):
    """``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]``, or the newer
    ``[TOOL_CALLS]name[ARGS]{...}`` repeated."""

    start_tag = "[TOOL_CALLS]"

    def __init__(self) -> None:
        super().__init__()
        self._scanner: ValueScanner | None = None
        self._sent = False  # the current [ARGS] call has emitted arguments text

    def _call_begin(self) -> bool:
        buf = self._skip_whitespace()
        if not buf:
            return False
        if buf[0] == "[":
            self._hold("[")
            self._buf = buf[1:]
            self._state = self._item
        else:
            self._state = self._name
        return True

    def _item(self) -> bool:
        return self._open_object(self._array_call)

    def _array_call(self) -> bool:
        return self._read_call(self._item_end)

    def _item_end(self) -> bool:
        buf = self._skip_whitespace()
        if not buf:
            return False
        if buf[0] == ",":
            self._hold(",")
            self._buf = buf[1:]
            self._state = self._item
        elif buf[0] == "]":
            self._raw, self._buf = [], buf[1:]
            self._state = self._after
        else:
            self._fail()
        return True

    def _name(self) -> bool:
        buf = self._buf
        match = _MISTRAL_NAME.match(buf)
        end = match.end() if match else 0
        rest = buf[end:]
        if end and rest.startswith(_MISTRAL_ARGS):
            self._out.append(CallStart(self._calls, buf[:end]))
            self._raw, self._buf = [], rest[len(_MISTRAL_ARGS) :]
            self._scanner, self._sent = None, False
            self._state = self._args
            return True
        if is_partial(rest, _MISTRAL_ARGS):
            return False
        self._fail()
        return True

    def _args(self) -> bool:
        if self._scanner is None:
            buf = self._buf = self._buf.lstrip()
            if not buf:
                return False
            if buf[0] != "{":
                self._end_call()
                return True
            self._scanner = ValueScanner()
        end = self._scanner.scan(self._buf, 0)
        stop = len(self._buf) if end < 0 else end
        self._out.append(CallArguments(self._calls, self._buf[:stop]))
        self._sent = True
        self._buf = self._buf[stop:]
        if end < 0:
            return False
        self._end_call()
        return True

    def _end_call(self) -> None:
        if not self._sent:
            self._out.append(CallArguments(self._calls, "{}"))
        self._calls += 1
        self._state = self._after

    def _flush(self) -> None:
        if self._state == self._args:
            self._end_call()


class _Llama3JsonReader(_ToolReader):
    """Llama 3.x JSON calls: ``{"name": ..., "parameters": {...}}``, several joined by ``;``, only at
    the very start of the answer (after whitespace and an optional ``<|python_tag|>``)."""

    python_tag = "<|python_tag|>"

    def _begin(self) -> bool:
        buf = self._skip_whitespace()
        if buf.startswith(self.python_tag):
            self._hold(self.python_tag)
            self._buf = buf[len(self.python_tag) :]
            self._state = self._object_begin
            return True
        if is_partial(buf, self.python_tag):
            return False
        self._state = self._object_begin
        return True

    def _object_begin(self) -> bool:
        return self._open_object(self._call)

    def _call(self) -> bool:
        return self._read_call(self._separator)

    def _separator(self) -> bool:
        buf = self._buf = self._buf.lstrip()
        if not buf:
            return False
        if buf[0] == ";":
            self._raw, self._buf = [";"], buf[1:]
            self._state = self._object_begin
        else:
            self._state = self._text
        return True

    def _text(self) -> bool:
        """Not a call (or text after the calls): the rest of the output is content."""
        self._content(self._buf)
        self._buf = ""
        return False


READERS: dict[str, Callable[[], _ToolReader]] = {
    "hermes": _HermesReader,
    "llama3_json": _Llama3JsonReader,
    "mistral": _MistralReader,
}
