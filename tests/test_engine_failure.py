"""A failed engine step ends the batch's requests with a clear error and asks for a new engine process.

openvino-genai's pipeline refuses every later step after one fails ("cannot be called when we are
already in scheduling phase"), so carrying on would fail every request from then on while the model
looked ready. No request through the API can make a step fail today; a structured-output schema that
xgrammar cannot compile does, so this test adds one straight to the real pipeline, beside a request
of the engine's own. The restart that follows is the same path as a killed engine's
(tests/test_resilience.py).
"""

from __future__ import annotations

import openvino_genai as ov_genai
import pytest

from adapters.base import ChatMessage, EngineUnavailableError, GenerationParams
from adapters.channel import Prepared
from adapters.openvino.spec import PipelineSpec
from adapters.openvino.worker.engine import EngineBrokenError
from adapters.openvino.worker.pipeline import build_engine
from gateway.config import ServerConfig
from gateway.sources import ensure_demo_model


@pytest.fixture(scope="module")
def engine():
    path = ensure_demo_model(ServerConfig().cache_path)
    spec = PipelineSpec(model_id="broken", path=path, device="CPU", scheduler={"cache_size": 1})
    return build_engine(spec)


def test_failed_step_fails_the_batch_and_breaks_the_engine(engine):
    params = GenerationParams(messages=(ChatMessage("user", "hi"),), max_tokens=8)
    prompt = engine.tokenizer.encode("Hello there", add_special_tokens=False).input_ids.data[0].tolist()
    engine.add(Prepared(1, prompt, 8, params))
    engine.step()
    poisoned = ov_genai.GenerationConfig()
    poisoned.max_new_tokens = 4
    poisoned.structured_output_config = ov_genai.StructuredOutputConfig(json_schema='{"type": "nonsense"}')
    handle = engine.pipeline.add_request(99, engine.tokenizer.encode("Give JSON").input_ids, poisoned)
    with pytest.raises(EngineBrokenError):
        engine.step()
    handle.cancel()
    outbox = engine.take_outbox()
    assert isinstance(outbox[1], EngineUnavailableError), outbox
    assert outbox[1].retry_after and "restarting" in str(outbox[1])
    assert engine.running == 0
