"""``PipelineSpec``: what the engine process needs to load a model. Imports no OpenVINO."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

EngineKind = Literal["auto", "continuous", "sequential"]

DEVICE_DEFAULT_PROPERTIES: dict[str, dict[str, Any]] = {
    "CPU": {"KV_CACHE_PRECISION": "f16"},
}
"""OpenVINO properties each device family gets unless the model's config sets them. CPU: a float16 KV
cache, as llama.cpp (``--cache-type-k f16``) and vLLM (``kv_cache_dtype auto``) keep by default, instead
of OpenVINO's u8. Measured on the demo model (2-core AVX2 machine) with both pipelines in one process
and their runs interleaved: 1.08x at one stream and 1.06x at eight against u8 (over HTTP, one variant
after the other, the same change read 0.86-1.24x: a small gain under the noise; docs/benchmarks.md).
It holds half as many tokens in the same ``cache_size``; set ``KV_CACHE_PRECISION = "u8"`` where
memory matters more than speed."""


def device_family(device: str) -> str:
    """The device without index or targets: ``GPU.1`` -> ``GPU``, ``AUTO:GPU,CPU`` -> ``AUTO``."""
    return device.split(":")[0].split(".")[0].upper()


InferencePrecision = Literal["auto", "f32", "bf16", "f16"]
INFERENCE_PRECISIONS: tuple[InferencePrecision, ...] = typing.get_args(InferencePrecision)

PRECISION_HINT = "INFERENCE_PRECISION_HINT"

AUTO_INFERENCE_PRECISION: dict[str, str] = {"CPU": "f32"}
"""What ``inference_precision = "auto"`` asks each device family for; a family not listed keeps its plugin's
own default (GPU: f16, NPU: f16). CPU: f32, where OpenVINO's CPU plugin would pick bf16 on any CPU with
``avx512_bf16`` or AMX. Measured on the demo model and its exports (docs/benchmarks.md, "Inference
precision"): on a Xeon with AMX, bf16 decoded int4, int8 and GGUF weights at 0.6-0.8x of f32's speed and
prefilled at 1.5-2.1x; on an EPYC with ``avx512_bf16`` it decoded at f32's speed; on both it changed
greedy answers (on the EPYC the int8 export answered "L'Étoile, la Marseillaise..." to "What is the
capital of France?").
f32 keeps OpenVINO's dynamic quantization of activations in front of int4 and int8 weights
(``DYNAMIC_QUANTIZATION_GROUP_SIZE``), as llama.cpp quantizes activations for its quantized weights:
worth 1.35-2.6x here, for a mean KL of 0.003 from exact f32. vLLM and OVMS would run bf16 here. Choose
``bf16`` per model where prompts are long and answers short; ``openarc compare --precision f32,bf16``
measures both on a model."""


def parse_precisions(value: str) -> tuple[InferencePrecision, ...]:
    """``"f32,bf16"`` as a tuple of precisions; ``ValueError`` naming the choices for anything else."""
    chosen = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if not chosen or any(part not in INFERENCE_PRECISIONS for part in chosen):
        raise ValueError(
            f"expected some of {', '.join(INFERENCE_PRECISIONS)}, comma-separated; got {value!r}"
        )
    return chosen  # type: ignore[return-value]  # checked against the Literal's values above


def precision_hint(device: str, inference_precision: InferencePrecision = "auto") -> str | None:
    """The ``INFERENCE_PRECISION_HINT`` a model on ``device`` is loaded with (``None``: the plugin's)."""
    if inference_precision != "auto":
        return inference_precision
    return AUTO_INFERENCE_PRECISION.get(device_family(device))


def default_properties(
    device: str,
    configured: dict[str, Any],
    compiled_cache: Path | None = None,
    inference_precision: InferencePrecision = "auto",
) -> dict[str, Any]:
    """The OpenVINO properties a model is loaded with: its configured ones over the defaults of its
    device family, the inference precision it asks for (``precision_hint``) and, given
    ``compiled_cache``, OpenVINO's compiled-model cache there (``CACHE_DIR``)."""
    defaults = dict(DEVICE_DEFAULT_PROPERTIES.get(device_family(device), {}))
    hint = precision_hint(device, inference_precision)
    if hint is not None:
        defaults[PRECISION_HINT] = hint
    if compiled_cache is not None:
        defaults["CACHE_DIR"] = str(compiled_cache)
    return {**defaults, **configured}


# Devices whose LLM pipelines cannot batch requests: they get the sequential engine under "auto".
_SEQUENTIAL_DEVICES = {"NPU"}


@dataclass(frozen=True)
class PipelineSpec:
    """Everything the engine process needs to load a model (picklable: it crosses the process boundary)."""

    model_id: str
    path: Path
    device: str
    properties: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)
    engine: EngineKind = "auto"
    context_length: int | None = None
    converted_dir: Path | None = None
    """Where GGUF files are kept converted to IR folders (``gguf_conversion``); ``None`` loads a GGUF as it
    is, converting it at every start."""
    chat_template: str | None = None
    """Jinja text replacing the model's own chat template; ``None`` keeps the model's."""
    tool_parser: str = "auto"
    """The tool-call syntax to parse (``auto``: found in the chat template; ``none``: no parsing)."""
    reasoning_parser: str = "auto"
    """``think`` parses ``<think>...</think>`` reasoning; ``auto`` when the chat template has it."""
    prompt_lookup: bool = False
    """Prompt-lookup speculative decoding: every request then carries ``num_assistant_tokens`` and
    ``max_ngram_size`` (openvino-genai refuses a request without them on such a pipeline)."""
    draft_path: Path | None = None
    """Speculative decoding with this draft model (same tokenizer); its requests carry
    ``num_assistant_tokens``."""
    draft_device: str | None = None
    """The draft model's device; the model's own when ``None``."""
    warm_up: bool = True
    """Run the first shapes a server meets at load (see ``pipeline.warm_up``)."""

    @property
    def device_family(self) -> str:
        """The device without index or targets (``GPU.1`` -> ``GPU``): what per-device defaults go by."""
        return device_family(self.device)

    @property
    def speculative(self) -> bool:
        """Decodes speculatively: every request must say how many tokens to guess."""
        return self.prompt_lookup or self.draft_path is not None

    @property
    def sequential(self) -> bool:
        """Whether the model runs on the one-request-at-a-time engine: as ``engine`` says, or under
        ``auto`` when its device's pipeline cannot batch (NPU)."""
        if self.engine != "auto":
            return self.engine == "sequential"
        return self.device_family in _SEQUENTIAL_DEVICES

    @property
    def running_slots(self) -> int:
        """Requests the engine generates for at once."""
        return 1 if self.sequential else int(self.scheduler.get("max_num_seqs", 256))
