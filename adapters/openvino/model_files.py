"""Facts about a model on disk that are needed before (or without) loading it: its format, its task
(chat, embedding, rerank), its context length, its export manifest and its size.

Reads only file headers and small JSON files, so it costs milliseconds and needs no OpenVINO. The export
package (``adapters.export``) writes the manifest and reads these same facts from here.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import BinaryIO, Literal

ModelFormat = Literal["gguf", "openvino-ir", "transformers"]

Task = Literal["text-generation", "feature-extraction", "text-classification"]
"""What a model was made for; it picks optimum-intel's exporter and the server's kind of model."""
TASKS: tuple[Task, ...] = ("text-generation", "feature-extraction", "text-classification")
ENCODER_TASKS: tuple[Task, ...] = ("feature-extraction", "text-classification")

MANIFEST = "openarc-export.json"
"""The file ``openarc export`` writes beside an export: its source, preset, options (task included)."""

_GGUF_MAGIC = b"GGUF"
# GGUF metadata value types (see the GGUF spec): fixed-size scalars by type id, then string/array.
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def detect_format(path: Path) -> ModelFormat | None:
    """Say what kind of model ``path`` holds, or ``None`` if it is not a model OpenArc can read."""
    if path.is_file() and path.suffix.lower() == ".gguf":
        return "gguf"
    if path.is_dir():
        if (path / "openvino_model.xml").is_file():
            return "openvino-ir"
        if (path / "config.json").is_file():
            return "transformers"
    return None


def context_length(path: Path) -> int | None:
    """The model's maximum context in tokens, from GGUF metadata or ``config.json``; ``None`` if unknown."""
    fmt = detect_format(path)
    if fmt == "gguf":
        return _gguf_context_length(path)
    if fmt is not None:
        return _config_context_length(path / "config.json")
    return None


def _config_context_length(config_path: Path) -> int | None:
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return None
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = config.get(key) or config.get("text_config", {}).get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _gguf_context_length(path: Path) -> int | None:
    """Scan GGUF metadata for ``<architecture>.context_length``.

    The ``gguf`` package's reader maps every tensor with numpy first (about 5 s for the demo model
    here); the header walk below reads only the key/value section and stops at the answer.
    """
    with path.open("rb") as f:
        if f.read(4) != _GGUF_MAGIC:
            return None
        version, _tensor_count, kv_count = struct.unpack("<IQQ", f.read(20))
        if version < 2:
            return None
        architecture = None
        lengths: dict[str, int] = {}
        for _ in range(kv_count):
            key = _read_string(f)
            (value_type,) = struct.unpack("<I", f.read(4))
            if key == "general.architecture" and value_type == _GGUF_STRING:
                architecture = _read_string(f)
            elif key.endswith(".context_length") and value_type in _GGUF_SCALARS:
                lengths[key] = _read_scalar(f, value_type)
            else:
                _skip_value(f, value_type)
            if architecture and f"{architecture}.context_length" in lengths:
                return int(lengths[f"{architecture}.context_length"])
    return None


def _read_string(f: BinaryIO) -> str:
    (size,) = struct.unpack("<Q", f.read(8))
    return f.read(size).decode("utf-8", errors="replace")


def _read_scalar(f: BinaryIO, value_type: int) -> int | float | bool:
    fmt = "<" + _GGUF_SCALARS[value_type]
    (value,) = struct.unpack(fmt, f.read(struct.calcsize(fmt)))
    return value


def _skip_value(f: BinaryIO, value_type: int) -> None:
    if value_type in _GGUF_SCALARS:
        f.seek(struct.calcsize("<" + _GGUF_SCALARS[value_type]), 1)
    elif value_type == _GGUF_STRING:
        (size,) = struct.unpack("<Q", f.read(8))
        f.seek(size, 1)
    elif value_type == _GGUF_ARRAY:
        item_type, count = struct.unpack("<IQ", f.read(12))
        if item_type in _GGUF_SCALARS:
            f.seek(count * struct.calcsize("<" + _GGUF_SCALARS[item_type]), 1)
        else:
            for _ in range(count):
                _skip_value(f, item_type)
    else:
        raise ValueError(f"unknown GGUF metadata type {value_type}")


def detect_kind(path: Path) -> str:
    """``chat``, ``embedding`` or ``rerank``, from the export's own files: the task its manifest records
    (an OpenArc export), else what its config.json architecture is for; a GGUF file is chat."""
    if path.is_file():
        return "chat"
    manifest = read_manifest(path)
    task = manifest_task(manifest) if manifest is not None else detect_task(path)
    return _TASK_KINDS[task]


def detect_task(model_dir: Path) -> Task:
    """The task a transformers folder was made for, from its ``config.json`` and ``modules.json``.

    A sequence-classification head is a reranker (a cross-encoder); a sentence-transformers folder or a
    bare encoder (``BertModel``, ``XLMRobertaModel``…) gives embeddings; anything else generates text.
    """
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    architectures = config.get("architectures") or []
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        return "text-classification"
    if (model_dir / "modules.json").is_file() or any(name.endswith("Model") for name in architectures):
        return "feature-extraction"
    return "text-generation"


def manifest_task(manifest: dict) -> Task:
    """The task an export's manifest records; exports made before tasks existed are chat models."""
    return manifest.get("options", {}).get("task", "text-generation")


def read_manifest(path: Path) -> dict | None:
    """The export manifest of a folder, if it has a readable one."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def disk_size(path: Path) -> int | None:
    """Bytes a model file or folder takes on disk."""
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    except OSError:
        return None


_TASK_KINDS = {"text-generation": "chat", "feature-extraction": "embedding", "text-classification": "rerank"}
