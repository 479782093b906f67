"""The default loader: builds the openvino-genai adapter for a model spec (blocking; run in a thread)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import msgspec

from adapters.base import Adapter

from .config import ConfigError, ModelSpec, ServerConfig
from .logs import configure_logging
from .sources import chat_template_text, resolve_source

Loader = Callable[[ModelSpec, Path, ServerConfig], Adapter]
"""Builds an adapter for a spec, given the model's local path and the server's config (blocking)."""


def load_openvino_genai(spec: ModelSpec, path: Path, config: ServerConfig) -> Adapter:
    """The default loader: the openvino-genai adapter, with compiled blobs cached between runs.

    The engine processes log like the server (level and text or JSON lines): they are handed the
    server's own logging setup, which they run at start.
    """
    from adapters.openvino.adapter import OpenVINOGenAIAdapter
    from adapters.openvino.encoder import EncoderAdapter
    from adapters.openvino.model_files import detect_kind
    from adapters.openvino.spec import PipelineSpec, default_properties

    setup_logging = functools.partial(configure_logging, config.log_level, config.log_format)
    kind = detect_kind(path) if spec.kind == "auto" else spec.kind
    properties = default_properties(
        spec.device, spec.properties, config.cache_path / "compiled", spec.inference_precision
    )
    if kind != "chat":
        return EncoderAdapter.load(
            spec.id,
            kind,
            str(path),
            spec.device,
            spec.max_queue,
            spec.batch_size,
            spec.batch_wait,
            setup_logging,
            properties,
        )
    speculative = spec.speculative
    draft = None
    if speculative.method == "draft_model":
        if not speculative.draft_model:
            raise ConfigError(
                f"model {spec.id}: speculative.method draft_model needs speculative.draft_model"
            )
        draft = resolve_source(speculative.draft_model, config.cache_path)
    pipeline = PipelineSpec(
        model_id=spec.id,
        path=path,
        device=spec.device,
        properties=properties,
        converted_dir=config.cache_path / "converted",
        scheduler=msgspec.structs.asdict(spec.scheduler),
        engine=spec.engine,
        chat_template=chat_template_text(spec.chat_template),
        tool_parser=spec.tool_parser,
        reasoning_parser=spec.reasoning_parser,
        prompt_lookup=speculative.method == "prompt_lookup",
        draft_path=draft,
        draft_device=speculative.draft_device,
        warm_up=spec.warm_up,
    )
    return OpenVINOGenAIAdapter.load(pipeline, spec.max_queue, spec.stall_timeout, setup_logging)
