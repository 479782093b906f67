"""Prefix caching: a repeated or growing prompt reports the tokens its KV cache reuses."""

from __future__ import annotations

import uuid

from conftest import DEMO, SEQUENTIAL

from adapters.openvino.worker.prefix_cache import PrefixCacheTracker


def long_prompt() -> list[dict]:
    # A unique opening makes the first request a certain miss, whatever ran before.
    facts = " ".join(f"Fact {i}: shelf {i % 7} holds box {i * 3}." for i in range(60))
    return [{"role": "user", "content": f"Session {uuid.uuid4()}. {facts} Which shelf holds box 9?"}]


def test_repeated_long_prompt_reports_cached_tokens(client):
    messages = long_prompt()
    first = client.chat.completions.create(model=DEMO, messages=messages, temperature=0, max_tokens=8)
    again = client.chat.completions.create(model=DEMO, messages=messages, temperature=0, max_tokens=8)
    prompt_tokens = first.usage.prompt_tokens
    assert prompt_tokens > 500
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = again.usage.prompt_tokens_details.cached_tokens
    # Whole 32-token blocks are reused; the last, partial block is computed again, and at least one token
    # always is (a prompt of whole blocks, 1 time in 32 here, reuses all but its last token).
    assert cached == min(prompt_tokens // 32 * 32, prompt_tokens - 1), (prompt_tokens, cached)


def test_next_turn_reuses_the_history(client):
    messages = long_prompt()
    first = client.chat.completions.create(model=DEMO, messages=messages, temperature=0, max_tokens=16)
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And box 12?"},
    ]
    second = client.chat.completions.create(
        model=DEMO,
        messages=messages,
        temperature=0,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = list(second)[-1].usage
    assert usage.prompt_tokens > first.usage.prompt_tokens
    assert usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens - 32


def test_engine_without_prefix_cache_does_not_guess(client):
    response = client.chat.completions.create(model=SEQUENTIAL, messages=long_prompt(), max_tokens=4)
    assert response.usage.prompt_tokens_details is None


def test_tracker_counts_whole_matching_blocks():
    tracker = PrefixCacheTracker(block_size=4, capacity_blocks=100)
    assert tracker.cached_tokens(list(range(10))) == 0
    tracker.record(list(range(10)))  # blocks [0-3], [4-7]; 8, 9 are a partial block
    assert tracker.cached_tokens(list(range(10))) == 8
    assert tracker.cached_tokens(list(range(8))) == 7, "the last prompt token is always computed"
    assert tracker.cached_tokens([0, 1, 2, 3, 99, 5, 6, 7]) == 4, "a block matches only with its prefix"
    assert tracker.cached_tokens([9, 1, 2, 3, 4, 5, 6, 7, 8]) == 0


def test_tracker_evicts_least_recently_used_blocks():
    tracker = PrefixCacheTracker(block_size=2, capacity_blocks=4)
    tracker.record([1, 2, 3, 4])  # 2 blocks
    tracker.record([5, 6, 7, 8])  # 2 blocks: full
    assert tracker.cached_tokens([1, 2, 3, 4, 0]) == 4  # touches the first sequence
    tracker.record([9, 10, 11, 12])  # evicts the least recently used: [5, 6, 7, 8]
    assert tracker.cached_tokens([5, 6, 7, 8, 0]) == 0
    assert tracker.cached_tokens([1, 2, 3, 4, 0]) == 4
