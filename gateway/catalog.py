"""The model catalog: every model the server can serve, configured or found in its model folders.

A model folder holds models side by side: OpenVINO exports (chat, embedding or rerank) and ``.gguf``
files, each named by its folder or file name. Anything else in it is skipped with a log line, never an
error: a half-copied export or a stray file must not stop a server. Only file headers and small JSON
files are read, so a scan costs milliseconds and needs no OpenVINO. ``openarc models`` prints the same
catalog.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from adapters.openvino.model_files import context_length, detect_format, detect_kind, disk_size, read_manifest

from .config import DEMO_SOURCE, ModelSpec, ServerConfig
from .sources import demo_model_path

logger = logging.getLogger(__name__)

SERVABLE_FORMATS = ("openvino-ir", "gguf")
"""What the server loads as it is; a transformers folder must be exported first (``openarc export``)."""


@dataclass(frozen=True)
class CatalogEntry:
    """One model the server can serve, before it is loaded."""

    spec: ModelSpec
    path: Path | None
    """Where it is on disk; ``None`` until loaded for a source that is not local yet (a hub id, the demo
    model before it is fetched)."""
    configured: bool
    """From the config file or ``--model`` (``False``: found in a model folder)."""
    kind: str
    """``chat``, ``embedding`` or ``rerank``; ``auto`` when its files are not there to say."""
    size_bytes: int | None
    context_length: int | None


def build_catalog(config: ServerConfig) -> list[CatalogEntry]:
    """The configured models, then every model in ``config.models_paths`` that is not one of them."""
    entries = [_entry(spec, local_path(spec.source, config), configured=True) for spec in config.models]
    ids = {entry.spec.id for entry in entries}
    paths = {entry.path for entry in entries if entry.path is not None}
    for name, path in scan(config.models_paths):
        if path in paths:
            continue  # configured under its own id
        if name in ids:
            logger.warning("model folder: %s is named like another model (%s); skipped", path, name)
            continue
        spec = ModelSpec(id=name, source=str(path), preload=False)
        entries.append(_entry(spec, path, configured=False))
        ids.add(name)
        paths.add(path)
    return entries


def scan(folders: list[Path]) -> list[tuple[str, Path]]:
    """``(name, path)`` of every servable model directly inside ``folders`` (missing folders are skipped)."""
    found = []
    for folder in folders:
        if not folder.is_dir():
            if folder.exists():
                logger.warning("model folder %s is not a folder; skipped", folder)
            continue
        for child in sorted(folder.iterdir()):
            fmt = detect_format(child)
            if fmt in SERVABLE_FORMATS:
                name = child.stem if fmt == "gguf" else child.name
                found.append((name, child.resolve()))
            elif fmt == "transformers":
                logger.info(
                    "model folder: %s is not exported to OpenVINO (`openarc export` it); skipped", child
                )
            elif not child.name.startswith(".") and not child.name.endswith(".partial"):
                logger.info("model folder: %s is not a model; skipped", child)
    return found


def local_path(source: str, config: ServerConfig) -> Path | None:
    """Where a ``source`` already is on disk, without fetching anything."""
    if source == DEMO_SOURCE:
        path = demo_model_path(config.cache_path)
        return path if path.is_file() else None
    path = Path(source).expanduser()
    return path.resolve() if path.exists() else None


def _entry(spec: ModelSpec, path: Path | None, configured: bool) -> CatalogEntry:
    kind = spec.kind
    if kind == "auto" and path is not None and detect_format(path) in SERVABLE_FORMATS:
        kind = detect_kind(path)
    return CatalogEntry(
        spec=spec,
        path=path,
        configured=configured,
        kind=kind,
        size_bytes=disk_size(path) if path is not None else None,
        context_length=context_length(path) if path is not None else None,
    )


def format_table(entries: list[CatalogEntry]) -> str:
    """A plain-text table of the catalog for the terminal (``openarc models``)."""
    rows = [("NAME", "KIND", "FORMAT", "DEVICE", "SIZE", "CONTEXT", "LOAD", "MADE", "PATH")]
    for e in entries:
        fmt = detect_format(e.path) if e.path is not None else None
        rows.append(
            (
                e.spec.id,
                e.kind,
                fmt or "?",
                e.spec.device,
                _megabytes(e.size_bytes),
                str(e.context_length or "?"),
                "at start" if e.spec.preload else "on first use",
                _made(e.path, fmt) if e.path is not None and fmt else "not fetched yet",
                str(e.path or e.spec.source),
            )
        )
    return columns(rows)


def format_live_table(models: list[dict]) -> str:
    """A plain-text table of a running server's ``/v1/models`` (``openarc models --url``)."""
    rows = [("NAME", "STATE", "KIND", "DEVICE", "SIZE", "MEMORY", "CONTEXT")]
    for m in models:
        rows.append(
            (
                m["id"],
                m.get("state", "ready"),
                m.get("kind", "chat"),
                m.get("device", "?"),
                _megabytes(m.get("size_bytes")),
                _megabytes(m.get("memory_bytes")),
                str(m.get("context_length") or "?"),
            )
        )
    return columns(rows)


def columns(rows: list[tuple[str, ...]]) -> str:
    """Rows as left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _megabytes(size: int | None) -> str:
    return f"{size / 1e6:.0f} MB" if size is not None else "-"


def _made(path: Path, fmt: str) -> str:
    if fmt == "gguf":
        return "GGUF file (converted at load)"
    manifest = read_manifest(path)
    if manifest is None:
        return "exported elsewhere (no manifest)" if fmt == "openvino-ir" else "not exported (transformers)"
    options = manifest.get("options", {})
    detail = ", ".join(f"{k}={v}" for k, v in options.items() if v not in (None, False))
    return f"openarc export {manifest.get('preset') or 'custom'}: {detail}"
