"""What an export is for: chat (text generation), embeddings (feature extraction) or reranking.

The task picks optimum-intel's exporter and model class, which compression options make sense, and which
files besides the IR the server needs. It is recorded in the manifest as ``options.task``. Reads only
small JSON files; no OpenVINO, optimum or torch here.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

Task = Literal["text-generation", "feature-extraction", "text-classification"]
TASKS: tuple[Task, ...] = ("text-generation", "feature-extraction", "text-classification")
ENCODER_TASKS: tuple[Task, ...] = ("feature-extraction", "text-classification")

# optimum-intel's export task and model class for each task. Decoders are exported with the KV cache,
# which openvino-genai's LLM pipelines require.
OPTIMUM_TASKS: dict[Task, tuple[str, str]] = {
    "text-generation": ("text-generation-with-past", "OVModelForCausalLM"),
    "feature-extraction": ("feature-extraction", "OVModelForFeatureExtraction"),
    "text-classification": ("text-classification", "OVModelForSequenceClassification"),
}

# sentence-transformers' description of the embedding (pooling, normalization, maximum length): optimum
# exports only the transformer, so these are copied beside the IR for the server to read.
SENTENCE_TRANSFORMERS_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
)
# Modules openvino-genai's TextEmbeddingPipeline can reproduce (the transformer is the IR itself).
_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")


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


def copy_sentence_transformers_files(model_dir: Path, output: Path) -> list[str]:
    """Copy the sentence-transformers configuration beside the IR; returns notes on what cannot be served.

    Module folders (``1_Pooling``…) are copied as they are; a module that is not listed in
    ``modules.json`` with a folder (``Normalize`` has none) needs nothing copied.
    """
    for name in SENTENCE_TRANSFORMERS_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, output / name)
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return []
    notes = []
    for module in json.loads(modules_file.read_text()):
        kind = module.get("type", "").rsplit(".", 1)[-1]
        if kind not in _SUPPORTED_MODULES:
            notes.append(
                f"sentence-transformers module {module.get('path') or kind} ({kind}) is not part of the IR: "
                "embeddings will differ from sentence-transformers'"
            )
            logger.warning(notes[-1])
        folder = module.get("path")
        if folder and (model_dir / folder).is_dir():
            shutil.copytree(model_dir / folder, output / folder, dirs_exist_ok=True)
    return notes
