"""Events that queued up behind the engine go to the client joined (adapters/openvino/process.py)."""

from __future__ import annotations

import asyncio

from adapters.base import EngineUnavailableError, Finished, ReasoningDelta, TextDelta, TokenLogprobs, Usage
from adapters.openvino.process import _joined, _with_queued


def test_adjacent_text_of_one_choice_is_joined():
    events = [
        ReasoningDelta(0, "so"),
        ReasoningDelta(0, "."),
        TextDelta(0, "Hel"),
        TextDelta(0, "lo"),
        TextDelta(1, "Bon"),
        TextDelta(0, "!"),
        Finished(0, "stop"),
    ]
    assert _joined(events) == [
        ReasoningDelta(0, "so."),
        TextDelta(0, "Hello"),
        TextDelta(1, "Bon"),
        TextDelta(0, "!"),
        Finished(0, "stop"),
    ]


def test_text_with_logprobs_between_is_not_joined():
    events = [
        TextDelta(0, "a"),
        TokenLogprobs(0, ["a"], [-0.1]),
        TextDelta(0, "b"),
        TokenLogprobs(0, ["b"], [-0.2]),
    ]
    assert _joined(events) == events


def test_queued_batches_come_along_until_a_failure():
    async def scenario():
        queue = asyncio.Queue()
        failure = EngineUnavailableError("the engine process exited")
        for item in ([TextDelta(0, "b")], [TextDelta(0, "c")], failure, [Usage(1, 3, 0)]):
            queue.put_nowait(item)
        events, stopped_by = _with_queued([TextDelta(0, "a")], queue)
        assert _joined(events) == [TextDelta(0, "abc")]
        assert stopped_by is failure
        assert queue.qsize() == 1

    asyncio.run(scenario())
