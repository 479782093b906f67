"""OpenArc's record of which prompt prefixes the engine's KV cache holds, to report ``cached_tokens``.

openvino-genai (2026.4) reuses cached KV blocks for a repeated prompt prefix but does not say how many
tokens a request reused. This tracker follows the same rule the engine uses: the KV cache is split
into blocks of ``block_size`` tokens; a block is reusable when every token up to its end matches a
sequence seen before; the least recently used blocks are evicted when the cache is full. The count is
exact while that model holds and an estimate under memory pressure (the engine may evict in a
different order than the tracker when many requests run at once).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixCacheTracker:
    """Block-hash chains of token sequences the engine has computed, in LRU order."""

    def __init__(self, block_size: int, capacity_blocks: int):
        self.block_size = block_size
        self.capacity_blocks = capacity_blocks
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def cached_tokens(self, prompt: Sequence[int]) -> int:
        """Prompt tokens whose KV the engine can reuse; at least one token is always computed."""
        matched = 0
        for block_hash in self._chain(prompt):
            if block_hash not in self._blocks:
                break
            self._blocks.move_to_end(block_hash)
            matched += self.block_size
        return min(matched, max(len(prompt) - 1, 0))

    def record(self, tokens: Sequence[int]) -> None:
        """Remember the full blocks of a sequence whose KV the engine has computed."""
        for block_hash in self._chain(tokens):
            self._blocks[block_hash] = None
            self._blocks.move_to_end(block_hash)
        while len(self._blocks) > self.capacity_blocks:
            self._blocks.popitem(last=False)

    def _chain(self, tokens: Sequence[int]) -> list[int]:
        # Each block's hash covers everything before it, so equal hashes mean equal prefixes.
        hashes, previous = [], 0
        for end in range(self.block_size, len(tokens) + 1, self.block_size):
            previous = hash((previous, tuple(tokens[end - self.block_size : end])))
            hashes.append(previous)
        return hashes
