"""The candidates ``openarc export --sweep`` tries: the usual exports of one model, named and reusable.

fp16 (the reference), naive int8, data-free int4 symmetric and asymmetric at the two largest group sizes
the model's layers allow, the default ``int4-awq-se`` preset, and that preset with a ratio of 0.8 (the
layers NNCF ranks most sensitive stay in int8). Each candidate goes to a folder of its name; a folder
whose manifest records the same options is reused, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from ..openvino.model_files import MANIFEST
from .optimum_intel import PRESETS, ExportOptions

logger = logging.getLogger(__name__)

_GROUP_SIZES = (128, 64, 32, 16)
SWEEP_RATIO = 0.8
"""The ratio tried below 1: NNCF's usual step down when an all-int4 export loses too much."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One export of the sweep: its folder name, the preset it derives from, and its options."""

    name: str
    preset: str
    options: ExportOptions


def candidates(layer_sizes: list[int], num_samples: int | None = None) -> list[Candidate]:
    """The sweep's exports for a model whose linear layers take inputs of ``layer_sizes``.

    ``num_samples`` shortens calibration for the data-aware candidates (128 samples by default).
    """
    groups = [size for size in _GROUP_SIZES if all(width % size == 0 for width in layer_sizes)][:2] or [-1]
    made = [Candidate("fp16", "fp16", PRESETS["fp16"]), Candidate("int8", "int8", PRESETS["int8"])]
    for group in groups:
        for sym in (True, False):
            options = dataclasses.replace(PRESETS["int4"], sym=sym, group_size=group)
            made.append(Candidate(f"int4-{'sym' if sym else 'asym'}-g{group}", "int4", options))
    awq = dataclasses.replace(PRESETS["int4-awq-se"], group_size=groups[0], num_samples=num_samples)
    made.append(Candidate("int4-awq-se", "int4-awq-se", awq))
    made.append(
        Candidate(f"int4-awq-se-r{SWEEP_RATIO:g}", "int4-awq-se", dataclasses.replace(awq, ratio=SWEEP_RATIO))
    )
    return made


def layer_sizes(source: str) -> list[int]:
    """The hidden and intermediate sizes of ``source`` (a ``.gguf``, a local folder or a hub id)."""
    path = Path(source).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        from gguf import GGUFReader

        fields = GGUFReader(str(path)).fields
        architecture = fields["general.architecture"].contents()
        keys = (f"{architecture}.embedding_length", f"{architecture}.feed_forward_length")
        return [int(fields[key].contents()) for key in keys if key in fields]
    if not path.exists():
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(source, allow_patterns=["config.json"]))
    config = json.loads((path / "config.json").read_text())
    return [config[key] for key in ("hidden_size", "intermediate_size") if isinstance(config.get(key), int)]


def already_exported(folder: Path, candidate: Candidate) -> bool:
    """``folder`` holds this candidate: its manifest records the same options (the task included)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("options") == dataclasses.asdict(candidate.options)


def choose(names: list[str], available: list[Candidate]) -> list[Candidate]:
    """The named candidates, in the sweep's order; an unknown name is an error that lists the known ones."""
    known = {candidate.name: candidate for candidate in available}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown sweep candidate {unknown[0]!r}; this model's are {', '.join(known)}")
    return [candidate for candidate in available if candidate.name in names]
