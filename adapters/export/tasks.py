"""How each task (``model_files.Task``: chat, embeddings, reranking) is exported.

The task picks optimum-intel's exporter and model class, which compression options make sense, and which
files besides the IR the server needs. It is recorded in the manifest as ``options.task``; telling a
folder's task is ``model_files.detect_task``. Reads only small JSON files; no OpenVINO, optimum or torch
here.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ..openvino.model_files import Task

logger = logging.getLogger(__name__)

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
