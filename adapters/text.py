"""Token ids to clean text deltas: incremental detokenization and stop-string handling.

Both classes are backend-neutral: the detokenizer takes any ``decode(list[int]) -> str`` function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# Characters a decoder may produce for an incomplete UTF-8 sequence at the end of its input.
_REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas, decoding only a short window per token.

    Decoding the whole output after every token costs O(n^2) over a long answer. Instead we keep two
    offsets into the token list: text before ``_read`` has been emitted, and decoding starts a few
    tokens earlier, at ``_prefix``, so tokenizers that render a token differently at the start of a
    string (SentencePiece's leading space) still see their context. A delta is emitted only when the
    window decodes to more text than before and does not end in an incomplete UTF-8 character; some
    decoders drop an incomplete tail instead of writing U+FFFD, and the growth test covers both.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._tokens: list[int] = []
        self._prefix = 0
        self._read = 0

    @property
    def token_ids(self) -> list[int]:
        """Every token id pushed so far."""
        return list(self._tokens)

    def push(self, token_ids: Sequence[int]) -> str:
        """Add new token ids and return the text they complete (possibly empty)."""
        self.extend(token_ids)
        before, after = self.windows()
        return self.accept(self._decode(before) if before else "", self._decode(after))

    def extend(self, token_ids: Sequence[int]) -> None:
        """Add token ids without decoding yet (see ``detokenize_batch``)."""
        self._tokens.extend(token_ids)

    def windows(self) -> tuple[list[int], list[int]]:
        """The two token windows to decode: already-emitted context, and context plus new tokens."""
        return self._tokens[self._prefix : self._read], self._tokens[self._prefix :]

    def accept(self, before: str, after: str) -> str:
        """Take the decoded ``windows()`` and return the new text, if it is complete."""
        if len(after) <= len(before) or after.endswith(_REPLACEMENT):
            return ""
        self._prefix, self._read = self._read, len(self._tokens)
        return after[len(before) :]

    def flush(self) -> str:
        """Return whatever text is still held back at the end of generation."""
        if self._read >= len(self._tokens):
            return ""
        before = self._decode(self._tokens[self._prefix : self._read]) if self._read > self._prefix else ""
        after = self._decode(self._tokens[self._prefix :]).rstrip(_REPLACEMENT)
        self._prefix = self._read = len(self._tokens)
        return after[len(before) :]


def detokenize_batch(
    work: Sequence[tuple[IncrementalDetokenizer, Sequence[int]]],
    decode_batch: Callable[[list[list[int]]], list[str]],
) -> list[str]:
    """Advance many detokenizers with one decode call: the new text for each (detokenizer, ids) pair.

    A tokenizer call has a fixed cost (measured here: 0.13 ms for one short list, 0.16 ms for 32), so
    one call per engine step instead of two per sequence keeps detokenization off the critical path.
    """
    windows: list[list[int]] = []
    for detokenizer, token_ids in work:
        detokenizer.extend(token_ids)
        windows.extend(detokenizer.windows())
    texts = decode_batch(windows) if windows else []
    return [detokenizer.accept(texts[2 * i], texts[2 * i + 1]) for i, (detokenizer, _) in enumerate(work)]


class StopMatcher:
    """Cuts generated text at the first stop string and never lets any part of a stop string out.

    Text that could still turn into a stop string (a suffix equal to a stop string's prefix) is held
    back until the next delta decides it, so streamed and non-streamed output agree exactly.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False
        self.matched: str | None = None
        """The stop string that ended the text (the first one in the list, where two end it at once)."""

    def feed(self, text: str) -> str:
        """Return the part of ``text`` that is safe to emit; sets ``stopped`` once a stop string appears."""
        if not self._stops or self.stopped:
            return "" if self.stopped else text
        buffer = self._held + text
        cut = min((i for i in (buffer.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self.matched = next(s for s in self._stops if buffer.find(s) == cut)
            self._held = ""
            return buffer[:cut]
        keep = self._longest_partial_stop(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """At the end of generation, held-back text was not a stop string after all."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _longest_partial_stop(self, buffer: str) -> int:
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest
