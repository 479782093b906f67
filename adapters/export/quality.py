"""How close an export's predictions stay to a reference's: teacher-forced figures on a fixed text.

Every model reads the same token ids (the text tokenized once, by the reference's tokenizer) and at each
position its next-token distribution is compared with the reference's, as llama.cpp's perplexity tool
compares quantizations. Free-running answers say little: they diverge after a few words and never meet
again. Per export:

- perplexity: ``exp`` of the mean negative log-likelihood of the text's actual next tokens;
- KL divergence from the reference's next-token distribution, ``sum p_ref * (log p_ref - log p)``,
  averaged over positions and its 99th percentile (the worst positions are where quantization bites);
- top-1 agreement: the share of positions where both give the same token the highest probability.

The logits come from the OpenVINO runtime on ``openvino_model.xml`` (openvino-genai's pipelines expose
only the chosen token's log-probability), compiled with the properties a server loads the model with
(``adapters.openvino.spec.default_properties``: on CPU an f16 KV cache and, unless a ``Variant`` asks
for another, OpenArc's ``auto`` inference precision). The inference precision is part of what is
measured: the same weights in bf16 and in f32 are two variants, and a figure means little without it.

The text is cut into windows of ``context`` tokens, each read from an empty KV cache (``reset_state``) in
pieces of ``piece`` tokens. Windows overlap by a quarter and only their last three quarters are scored,
so every scored token has at least ``context / 4`` tokens before it and is scored once (llama.cpp scores
the second half of windows that do not overlap: the same idea; a quarter costs a third less compute for
the same scored tokens).

Memory stays bounded: the reference's log-probabilities at the scored positions are kept on disk as a
float16 memory map (a temporary file, about 250 MB for the demo model's 49,152-token vocabulary), and a
model's logits are held one piece at a time. A GGUF file is read by openvino-genai, which converts it to
an IR once (kept under ``gguf_cache``); that IR is what gets measured.

The default text, ``quality_text.txt`` beside this module, was written for OpenArc (prose, a recipe,
Python, SQL, JSON, a shell session, tables and numbers; about 3,200 tokens for the demo model) and is
licensed like OpenArc itself, Apache-2.0.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from adapters.openvino.spec import InferencePrecision, default_properties

logger = logging.getLogger(__name__)

DEFAULT_CONTEXT = 512
"""Tokens per window; the last three quarters of each window are scored."""
DEFAULT_PIECE = 128
"""Tokens fed per inference: the logits held at once are ``piece x vocabulary`` floats."""
_REQUIRED_INPUTS = {"input_ids", "attention_mask", "position_ids"}


class QualityError(Exception):
    """The models cannot be compared (not an IR, different vocabularies, text too short); one line."""


def default_text() -> str:
    """The text OpenArc ships for quality figures."""
    return files("adapters.export").joinpath("quality_text.txt").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Variant:
    """A model as it is run: its files and the inference precision it is compiled with."""

    path: Path
    precision: InferencePrecision = "auto"
    """As ``ModelSpec.inference_precision``: ``auto``, ``f32``, ``bf16`` or ``f16``."""

    @property
    def label(self) -> str:
        """How reports name the variant: its folder's name, with the precision unless it is ``auto``."""
        return self.path.name if self.precision == "auto" else f"{self.path.name} ({self.precision})"


@dataclass(frozen=True)
class QualityFigures:
    """One model's figures on the text; the comparison fields are ``None`` for the reference itself."""

    positions: int
    """Scored positions (next-token predictions)."""
    perplexity: float
    kl_mean: float | None = None
    kl_p99: float | None = None
    top1_agreement: float | None = None
    tokenizer_differences: int | None = None
    """Places where the model's own tokenizer splits the text differently from the reference's (every
    model reads the reference's tokens, so this is a finding about the tokenizer, not the weights)."""


def readable_ir(path: Path, gguf_cache: Path) -> Path:
    """An IR folder for ``path``: the folder itself, or for a ``.gguf`` the IR openvino-genai makes of it,
    kept in ``gguf_cache`` by the same conversion the server loads (``adapters.openvino.gguf_conversion``)."""
    if path.suffix.lower() != ".gguf":
        if not (path / "openvino_model.xml").is_file():
            raise QualityError(f"{path} is not an OpenVINO IR folder (no openvino_model.xml)")
        return path
    from adapters.openvino.gguf_conversion import ensure_converted

    folder = ensure_converted(path, gguf_cache)
    if folder == path:
        raise QualityError(f"{path} could not be converted to an IR in {gguf_cache} (see the warning above)")
    return folder


def tokenize(folder: Path, text: str) -> np.ndarray:
    """The text's token ids by the export's own OpenVINO tokenizer, without special tokens."""
    import openvino_genai as ov_genai

    encoded = ov_genai.Tokenizer(str(folder)).encode(text, add_special_tokens=False)
    return np.asarray(encoded.input_ids.data[0], dtype=np.int64)


class TeacherForcedModel:
    """An IR compiled with the OpenVINO runtime, returning next-token log-probabilities for windows."""

    def __init__(
        self,
        folder: Path,
        device: str = "CPU",
        piece: int = DEFAULT_PIECE,
        precision: InferencePrecision = "auto",
        properties: dict[str, Any] | None = None,
    ):
        """``properties``: OpenVINO properties over the server's defaults (to measure what one costs)."""
        import openvino as ov

        core = ov.Core()
        model = core.read_model(folder / "openvino_model.xml")
        names = {name for port in model.inputs for name in port.get_names()}
        if not _REQUIRED_INPUTS <= names:
            raise QualityError(
                f"{folder}: the model's inputs {sorted(names)} are not a decoder's with a KV cache "
                f"({', '.join(sorted(_REQUIRED_INPUTS))})"
            )
        if not model.get_sinks():
            # Without a stateful KV cache, pieces after the first would see no context.
            raise QualityError(f"{folder}: the model keeps no KV cache state (export it with the cache)")
        self._has_beam_idx = "beam_idx" in names
        self.vocabulary = model.outputs[0].get_partial_shape()[-1].get_length()
        loaded = default_properties(device, properties or {}, inference_precision=precision)  # as served
        self._request = core.compile_model(model, device, loaded).create_infer_request()
        self._piece = piece

    def log_probs(self, window: np.ndarray, scored_from: int) -> np.ndarray:
        """Log-probabilities of the token after each position from ``scored_from - 1`` on.

        Row ``i`` is the distribution the model gives to ``window[scored_from + i]``.
        """
        self._request.reset_state()  # the KV cache of the previous window must not leak in
        rows = []
        for start in range(0, len(window), self._piece):
            ids = window[start : start + self._piece]
            inputs = {
                "input_ids": ids[None, :],
                "attention_mask": np.ones((1, start + len(ids)), dtype=np.int64),
                "position_ids": np.arange(start, start + len(ids), dtype=np.int64)[None, :],
            }
            if self._has_beam_idx:
                inputs["beam_idx"] = np.zeros(1, dtype=np.int32)
            logits = self._request.infer(inputs)[0][0]
            first = max(scored_from - 1 - start, 0)
            last = min(len(ids), len(window) - 1 - start)  # the last token predicts nothing scored
            if first < last:
                rows.append(_log_softmax(logits[first:last]))
        return np.concatenate(rows)


def windows(ids: np.ndarray, context: int) -> Iterator[tuple[np.ndarray, int]]:
    """Windows of ``context`` tokens overlapping by a quarter, each with the index its scored part starts.

    Every token after the first ``context / 4`` is scored exactly once (the last window may be shorter).
    """
    lead = context // 4
    if len(ids) <= lead + 1:
        raise QualityError(f"the text has {len(ids)} tokens; at least {lead + 2} are needed")
    start = 0
    while True:
        yield ids[start : start + context], lead
        if start + context >= len(ids):
            return
        # The next window's scored part starts where this one ended.
        start += context - lead


class ReferenceRun:
    """The reference's log-probabilities at every scored position, kept on disk as float16."""

    def __init__(self, model: TeacherForcedModel, ids: np.ndarray, context: int, workdir: Path):
        self.ids = ids
        self.context = context
        plan = list(windows(ids, context))
        self.positions = sum(len(window) - scored_from for window, scored_from in plan)
        self._file = tempfile.NamedTemporaryFile(dir=workdir, prefix="reference-", suffix=".f16")
        self.log_probs = np.memmap(
            self._file.name, dtype=np.float16, mode="w+", shape=(self.positions, model.vocabulary)
        )
        targets, row, nll = [], 0, 0.0
        for window, scored_from in plan:
            rows = model.log_probs(window, scored_from)
            self.log_probs[row : row + len(rows)] = rows
            targets.append(window[scored_from:])
            nll -= float(np.sum(rows[np.arange(len(rows)), targets[-1]]))
            row += len(rows)
        self.targets = np.concatenate(targets)
        self.figures = QualityFigures(self.positions, math.exp(nll / self.positions))

    def _rows(self, start: int, stop: int) -> np.ndarray:
        """Stored rows, renormalized: float16 rounding must not leave a distribution summing to 1 ± ε."""
        rows = self.log_probs[start:stop].astype(np.float32)
        return rows - _logsumexp(rows)[:, None]

    def compare(self, model: TeacherForcedModel) -> QualityFigures:
        """Run ``model`` over the same windows and compare it with the stored reference."""
        if model.vocabulary != self.log_probs.shape[1]:
            raise QualityError(
                f"vocabularies differ ({model.vocabulary} and {self.log_probs.shape[1]} tokens): "
                "not exports of one model"
            )
        kl, agree, nll, row = [], 0, 0.0, 0
        for window, scored_from in windows(self.ids, self.context):
            mine = model.log_probs(window, scored_from)
            theirs = self._rows(row, row + len(mine))
            targets = self.targets[row : row + len(mine)]
            kl.append(np.sum(np.exp(theirs) * (theirs - mine), axis=1))
            agree += int(np.sum(np.argmax(mine, axis=1) == np.argmax(theirs, axis=1)))
            nll -= float(np.sum(mine[np.arange(len(mine)), targets]))
            row += len(mine)
        divergence = np.maximum(np.concatenate(kl), 0.0)  # rounding can leave -1e-9 where both agree
        return QualityFigures(
            positions=row,
            perplexity=math.exp(nll / row),
            kl_mean=float(divergence.mean()),
            kl_p99=float(np.percentile(divergence, 99)),
            top1_agreement=agree / row,
        )

    def close(self) -> None:
        """Drop the stored log-probabilities and delete the file that held them."""
        del self.log_probs
        self._file.close()


def compare_quality(
    reference: Variant,
    candidates: list[Variant],
    text: str | None = None,
    device: str = "CPU",
    context: int = DEFAULT_CONTEXT,
    gguf_cache: Path | None = None,
) -> dict[Variant, QualityFigures]:
    """Figures for ``reference`` and every candidate (IR folders or ``.gguf`` files, each at its inference
    precision) on ``text``.

    The candidates must tokenize the text exactly as the reference does: the figures compare
    predictions of the same tokens.
    """
    text = default_text() if text is None else text
    with tempfile.TemporaryDirectory(prefix="openarc-quality-") as scratch:
        cache = gguf_cache or Path(scratch)
        reference_ir = readable_ir(reference.path, cache)
        ids = tokenize(reference_ir, text)
        logger.info("quality: %d tokens; reference %s", len(ids), reference.label)
        model = TeacherForcedModel(reference_ir, device, precision=reference.precision)
        run = ReferenceRun(model, ids, context, Path(scratch))
        try:
            figures = {reference: run.figures}
            for candidate in candidates:
                if candidate == reference:
                    continue
                ir = readable_ir(candidate.path, cache)
                differences = token_differences(tokenize(ir, text), ids)
                if differences:
                    logger.warning(
                        "%s tokenizes the text differently from %s in %d places; both read the reference's "
                        "tokens",
                        candidate.path.name,
                        reference.path.name,
                        differences,
                    )
                logger.info("quality: %s", candidate.label)
                measured = run.compare(TeacherForcedModel(ir, device, precision=candidate.precision))
                figures[candidate] = dataclasses.replace(measured, tokenizer_differences=differences)
        finally:
            run.close()
    return figures


def token_differences(mine: np.ndarray, reference: np.ndarray) -> int:
    """How many stretches of tokens differ between two tokenizations of one text (0: identical)."""
    if np.array_equal(mine, reference):
        return 0
    matcher = difflib.SequenceMatcher(None, mine.tolist(), reference.tolist(), autojunk=False)
    return sum(tag != "equal" for tag, *_ in matcher.get_opcodes())


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float32, copy=False)
    return logits - _logsumexp(logits)[:, None]


def _logsumexp(rows: np.ndarray) -> np.ndarray:
    top = rows.max(axis=1)
    return top + np.log(np.sum(np.exp(rows - top[:, None]), axis=1))
