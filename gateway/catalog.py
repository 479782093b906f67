"""``openarc models``: the models OpenArc knows (configured, cached, exported), with how each was made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from adapters.openvino.model_files import context_length, detect_format, disk_size, read_manifest

from .config import DEMO_SOURCE, ServerConfig


@dataclass(frozen=True)
class CatalogEntry:
    """One model on disk (or named by config)."""

    name: str
    path: str
    format: str
    size_bytes: int | None
    context_length: int | None
    made: str
    """How it was made: the export preset and options, or what the file is."""


def catalog(config: ServerConfig, extra_paths: list[Path]) -> list[CatalogEntry]:
    """Configured models, the model cache, the exports folder, and any extra paths, without duplicates."""
    seen: set[Path] = set()
    entries = []
    candidates = [(spec.id, spec.source) for spec in config.models if spec.source != DEMO_SOURCE]
    for folder in (config.cache_path / "models", config.cache_path / "exports", *extra_paths):
        if folder.is_dir() and detect_format(folder) is None:
            candidates += [(child.name, str(child)) for child in sorted(folder.iterdir())]
        else:
            candidates.append((folder.name, str(folder)))
    for name, source in candidates:
        path = Path(source).expanduser()
        fmt = detect_format(path) if path.exists() else None
        if fmt is None or path.resolve() in seen:
            continue
        seen.add(path.resolve())
        entries.append(
            CatalogEntry(name, str(path), fmt, disk_size(path), context_length(path), _made(path, fmt))
        )
    return entries


def format_table(entries: list[CatalogEntry]) -> str:
    """A plain-text table for the terminal."""
    rows = [("NAME", "FORMAT", "SIZE", "CONTEXT", "MADE", "PATH")]
    for e in entries:
        size = f"{e.size_bytes / 1e6:.0f} MB" if e.size_bytes is not None else "?"
        rows.append((e.name, e.format, size, str(e.context_length or "?"), e.made, e.path))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _made(path: Path, fmt: str) -> str:
    if fmt == "gguf":
        return "GGUF file (converted at load)"
    manifest = read_manifest(path)
    if manifest is None:
        return "exported elsewhere (no manifest)" if fmt == "openvino-ir" else "not exported (transformers)"
    options = manifest.get("options", {})
    detail = ", ".join(f"{k}={v}" for k, v in options.items() if v not in (None, False))
    return f"openarc export {manifest.get('preset') or 'custom'}: {detail}"
