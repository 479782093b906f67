"""Holding back only the text that could still become a tag: every reader's tag test."""

from __future__ import annotations


def is_partial(text: str, tag: str) -> bool:
    """Whether ``text`` could still grow into ``tag`` (the empty string can)."""
    return len(text) < len(tag) and tag.startswith(text)


def partial_tail(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``tag``."""
    i = text.find(tag[0], max(0, len(text) - len(tag) + 1))
    while i >= 0:
        if tag.startswith(text[i:]):
            return len(text) - i
        i = text.find(tag[0], i + 1)
    return 0
