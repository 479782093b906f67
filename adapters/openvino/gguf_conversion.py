"""A GGUF model converted to an OpenVINO IR folder once, kept in the cache, and loaded from there after.

openvino-genai converts a GGUF file at every load: 11.7 s for the 135M demo model on a 2-core machine,
and the preparer process converts its tokenizer again (8 s) beside the engine. Loading the IR folder it
can save instead takes a fraction of that (measured figures: docs/benchmarks.md). The conversion runs in
a child process of its own, once per GGUF file and openvino-genai version, under a file lock so that two
servers sharing a cache never convert the same file at once. When it cannot be made (a read-only cache,
a full disk), the model is served from the GGUF as before, with a warning.

Imports no OpenVINO in the server process: the conversion imports it in its own process.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import multiprocessing
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from .file_lock import exclusive_lock

logger = logging.getLogger(__name__)

DONE = "openarc-converted.json"
"""Written last into a finished folder: a folder without it is never used."""
_SAVED_FILES = (
    "openvino_model.xml",
    "openvino_model.bin",
    "openvino_tokenizer.xml",
    "openvino_detokenizer.xml",
)


def converted_folder(gguf: Path, root: Path) -> Path:
    """Where the conversion of ``gguf`` is kept: named after the file, keyed by its identity (path, size,
    modification time) and the converter's version, so an edited file or an upgrade converts again."""
    stat = gguf.stat()
    version = importlib.metadata.version("openvino-genai")
    identity = f"{gguf.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{version}"
    return root / f"{gguf.stem}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def ensure_converted(gguf: Path, root: Path, setup_logging: Callable[[], None] = logging.basicConfig) -> Path:
    """The IR folder for ``gguf``, converting it first if no finished one is kept; ``gguf`` itself when
    the conversion fails (the model still loads, only slower)."""
    folder = converted_folder(gguf, root)
    if (folder / DONE).is_file():
        return folder
    try:
        root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(root / f".{folder.name}.lock"):
            if (folder / DONE).is_file():  # another server converted it while this one waited
                return folder
            _convert_in_child(gguf, folder, setup_logging)
    except (OSError, RuntimeError) as exc:
        logger.warning("serving %s without a kept conversion (each start converts it again): %s", gguf, exc)
        return gguf
    return folder


def _convert_in_child(gguf: Path, folder: Path, setup_logging: Callable[[], None]) -> None:
    """Convert in a process of its own: the server never imports OpenVINO, and the memory the
    conversion takes is given back when it ends."""
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)  # left by a conversion that was killed
    started = time.monotonic()
    logger.info("converting %s to an OpenVINO IR once; later starts load %s", gguf, folder)
    child = multiprocessing.get_context("spawn").Process(
        target=_convert, args=(gguf, staging, setup_logging), name="openarc-gguf-conversion", daemon=True
    )
    child.start()
    child.join()
    if child.exitcode != 0 or not (staging / DONE).is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"the conversion process ended with exit code {child.exitcode}")
    staging.rename(folder)
    logger.info("converted %s in %.1f s", gguf, time.monotonic() - started)


def _convert(gguf: Path, staging: Path, setup_logging: Callable[[], None]) -> None:
    """Runs in the child: openvino-genai saves the IR it converts next to the GGUF path it is given, so
    it is given a link to the file inside the staging folder."""
    setup_logging()
    import openvino_genai as ov_genai

    staging.mkdir(parents=True)
    link = staging / "model.gguf"
    link.symlink_to(gguf.resolve())
    # LLMPipeline (not ContinuousBatchingPipeline) is used because it saves the tokenizer and detokenizer
    # too, so the preparer process loads them in 0.2 s instead of converting them from the GGUF again.
    ov_genai.LLMPipeline(str(link), "CPU", enable_save_ov_model=True)
    link.unlink()
    missing = [name for name in _SAVED_FILES if not (staging / name).is_file()]
    if missing:
        raise RuntimeError(f"openvino-genai did not save {', '.join(missing)}")
    record = {"source": str(gguf.resolve()), "openvino_genai": importlib.metadata.version("openvino-genai")}
    (staging / DONE).write_text(json.dumps(record, indent=2) + "\n")
