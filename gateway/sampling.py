"""Sampling settings of a request, with the model's defaults: shared by every dialect that generates.

A dialect maps its request onto the names used here (OpenAI's: ``temperature``, ``top_p``, ``stop``,
...); what the request leaves out comes from the model's ``sampling`` setting (as vLLM reads a model's
``generation_config.json``), else OpenAI's default.
"""

from __future__ import annotations

from typing import Any, Protocol

from .config import ModelSpec, SpeculativeSettings
from .errors import UnsupportedParameterError


class SamplingRequest(Protocol):
    """The request fields sampling reads (chat and text completion requests have them all)."""

    n: int
    temperature: float | None
    top_p: float | None
    top_k: int | None
    min_p: float | None
    repetition_penalty: float | None
    seed: int | None
    presence_penalty: float
    frequency_penalty: float
    stop: str | list[str] | None
    ignore_eos: bool
    num_assistant_tokens: int | None
    max_ngram_size: int | None


def sampling(request: SamplingRequest, model: ModelSpec) -> dict[str, Any]:
    """The sampling settings as ``GenerationParams`` fields: what the request sets, else the model's
    ``sampling`` defaults, else OpenAI's; then speculative decoding's."""

    def setting(name: str, openai_default: float) -> Any:
        for value in (getattr(request, name), getattr(model.sampling, name)):
            if value is not None:
                return value
        return openai_default

    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    return {
        "n": request.n,
        "temperature": setting("temperature", 1.0),
        "top_p": setting("top_p", 1.0),
        "top_k": setting("top_k", 0),
        "min_p": setting("min_p", 0.0),
        "seed": request.seed,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "repetition_penalty": setting("repetition_penalty", 1.0),
        "stop": stop,
        "ignore_eos": request.ignore_eos,
        **_speculation(request, model.speculative),
    }


def _speculation(request: SamplingRequest, model: SpeculativeSettings) -> dict[str, Any]:
    """Speculative decoding's settings for one request: its own, else the model's. Setting them for a
    model that does not decode speculatively is a 400, not silently nothing."""
    asked = {
        name: getattr(request, name)
        for name in ("num_assistant_tokens", "max_ngram_size")
        if getattr(request, name) is not None
    }
    if model.method == "none" and asked:
        name = next(iter(asked))
        raise UnsupportedParameterError(
            f"{name} needs a model served with speculative decoding (its speculative.method)", param=name
        )
    if model.method == "draft_model" and "max_ngram_size" in asked:
        raise UnsupportedParameterError(
            "max_ngram_size applies to prompt lookup; this model drafts with a draft model",
            param="max_ngram_size",
        )
    if model.method == "none":
        return {}
    return {
        "num_assistant_tokens": asked.get("num_assistant_tokens", model.num_assistant_tokens),
        "max_ngram_size": asked.get("max_ngram_size", model.max_ngram_size)
        if model.method == "prompt_lookup"
        else None,
    }
