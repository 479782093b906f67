"""Where the raw pipeline's model comes from: the files the server itself loads for a source."""

from __future__ import annotations

from pathlib import Path


def loaded_path(source: str) -> Path:
    """The files the server loads for a model source: a GGUF's kept IR conversion, else the source's."""
    from adapters.openvino.gguf_conversion import ensure_converted
    from adapters.openvino.model_files import detect_format
    from gateway.config import ServerConfig
    from gateway.sources import resolve_source

    cache_dir = ServerConfig().cache_path
    path = resolve_source(source, cache_dir)
    return ensure_converted(path, cache_dir / "converted") if detect_format(path) == "gguf" else path
