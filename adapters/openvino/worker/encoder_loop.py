"""The encoder process: one embedding or rerank pipeline, serving batches the server sends (engine side).

Embedding and rerank models run in a process of their own for the same reasons as generation engines:
a crash (openvino-genai's TextEmbeddingPipeline segfaulted here on an empty list after an earlier
call) takes down only this process, which the server notices at once and restarts. The pipelines
release the GIL, but one pipeline runs one call at a time ("Infer Request is busy" otherwise), so the
loop is strictly sequential: the server does the batching.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...base import AdapterError, InvalidParametersError, ModelLoadError, first_line
from ...channel import (
    BatchFailed,
    BlockingFrames,
    ChannelClosedError,
    Embed,
    Embedded,
    EncoderReady,
    LoadFailed,
    Rerank,
    Reranked,
    Shutdown,
    ToEncoder,
    failure_to_wire,
)
from ..devices import effective_precision
from ..spec import PRECISION_HINT

logger = logging.getLogger(__name__)


EVERY_DOCUMENT = 2**31 - 1
"""The rerank pipeline keeps only its config's ``top_n`` best (3 by default): ask for all, cut later."""


def encoder_main(
    sock: socket.socket,
    kind: str,
    path: str,
    device: str,
    setup_logging: Callable[[], None],
    properties: dict[str, Any] | None = None,
) -> None:
    """Load the pipeline, report ready (or why not), then serve until end-of-file or ``Shutdown``."""
    setup_logging()
    frames = BlockingFrames(sock, ToEncoder)
    properties = properties or {}
    try:
        encoder = Encoder(kind, Path(path), device, properties)
    except Exception as exc:  # the server reports it as the model's load failure
        logger.exception("loading %s failed", path)
        frames.send(LoadFailed(f"could not load the {kind} model: {first_line(exc)}"))
        return
    precision = effective_precision(device, properties.get(PRECISION_HINT))
    frames.send(EncoderReady(encoder.dimensions, encoder.max_length, precision))
    try:
        while not isinstance(message := frames.recv(), Shutdown):
            frames.send(encoder.serve(message))
    except (ChannelClosedError, BrokenPipeError, ConnectionResetError):
        logger.info("encoder channel closed; stopping")


class Encoder:
    """One TextEmbeddingPipeline or TextRerankPipeline, configured from the export's own files."""

    def __init__(self, kind: str, path: Path, device: str, properties: dict[str, Any] | None = None):
        import openvino_genai as ov_genai

        properties = properties or {}
        self.kind = kind
        self.tokenizer = ov_genai.Tokenizer(str(path))
        self.max_length = sentence_transformers_max_length(path)
        if kind == "embedding":
            config = ov_genai.TextEmbeddingPipeline.Config()
            config.pooling_type = getattr(ov_genai.TextEmbeddingPipeline.PoolingType, pooling(path))
            config.normalize = normalizes(path)
            if self.max_length is not None:
                config.max_length = self.max_length
            self.pipeline = ov_genai.TextEmbeddingPipeline(str(path), device, config, **properties)
            self.dimensions: int | None = len(self.pipeline.embed_query("warm-up"))
        elif kind == "rerank":
            config = ov_genai.TextRerankPipeline.Config()
            config.top_n = EVERY_DOCUMENT
            if self.max_length is not None:
                config.max_length = self.max_length
            self.pipeline = ov_genai.TextRerankPipeline(str(path), device, config, **properties)
            self.pipeline.rerank("warm-up", ["warm-up"])
            self.dimensions = None
        else:
            raise ModelLoadError(f"unknown encoder kind {kind!r}")

    def serve(self, message: Embed | Rerank) -> Embedded | Reranked | BatchFailed:
        """Encode one batch; a failure becomes a ``BatchFailed`` for its requests; the process serves on."""
        try:
            if not (message.texts if isinstance(message, Embed) else message.documents):
                # openvino-genai answers an empty list with garbage or a crash: never pass one on.
                raise InvalidParametersError("nothing to encode")
            if isinstance(message, Embed):
                # The pipeline takes text only: token arrays are decoded and tokenized again (the same
                # ids for ordinary text; exact only up to the tokenizer's normalization).
                texts = [t if isinstance(t, str) else self.tokenizer.decode(t) for t in message.texts]
                vectors = np.asarray(self.pipeline.embed_documents(texts), dtype=np.float32)
                return Embedded(message.batch_id, vectors.tobytes(), self._token_counts(texts))
            scores = [(int(i), float(s)) for i, s in self.pipeline.rerank(message.query, message.documents)]
            pairs = [message.query + " " + document for document in message.documents]
            return Reranked(message.batch_id, scores, sum(self._token_counts(pairs)))
        except AdapterError as exc:
            return BatchFailed(message.batch_id, failure_to_wire(exc))
        except Exception as exc:  # one bad batch fails its requests, not the process
            logger.exception("encoding batch %d failed", message.batch_id)
            return BatchFailed(message.batch_id, failure_to_wire(InvalidParametersError(first_line(exc))))

    def _token_counts(self, texts: list[str]) -> list[int]:
        """Tokens per text as the model sees them: special tokens included, cut at ``max_length``."""
        mask = self.tokenizer.encode(texts).attention_mask.data
        counts = [int(row.sum()) for row in mask]
        return [min(count, self.max_length) for count in counts] if self.max_length else counts


# --- the export's sentence-transformers files (optimum-intel ignores them; OpenArc's export copies them) ---


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pooling(path: Path) -> str:
    """The pooling the model was trained with, as openvino-genai names it (mean when unknown)."""
    config = _read_json(path / "1_Pooling" / "config.json") or {}
    if config.get("pooling_mode_cls_token"):
        return "CLS"
    if config.get("pooling_mode_lasttoken"):
        return "LAST_TOKEN"
    return "MEAN"


def normalizes(path: Path) -> bool:
    """Whether the sentence-transformers pipeline ends with Normalize (true when unknown: the usual case,
    and cosine similarity, what clients compute, does not change)."""
    modules = _read_json(path / "modules.json")
    if not isinstance(modules, list):
        return True
    return any(str(module.get("type", "")).endswith("Normalize") for module in modules)


def sentence_transformers_max_length(path: Path) -> int | None:
    """The longest input the model was trained on, where inputs are cut (``max_seq_length`` in
    ``sentence_bert_config.json``); ``None`` when the export does not say."""
    config = _read_json(path / "sentence_bert_config.json") or {}
    value = config.get("max_seq_length")
    return int(value) if isinstance(value, int) and value > 0 else None
