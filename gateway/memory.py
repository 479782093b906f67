"""What a model costs in memory: an estimate before it loads, and its processes' resident memory after.

The estimate is the model's worst case, because that is what a budget must hold: the weights (its files
on disk), the KV cache it may fill (``scheduler.cache_size``: openvino-genai grows the cache as prompts
arrive, up to that size), and the overhead of the processes that serve it (the runtime and the compiled
graph beside the weights), measured here on the demo and embedding models and recorded in
docs/benchmarks.md. An idle model resides far below its estimate; a busy one approaches it.
"""

from __future__ import annotations

from pathlib import Path

from .config import ModelSpec

GIB = 2**30
ENGINE_OVERHEAD = 320 * 10**6
"""A chat engine process beyond its weights and KV cache (demo model on CPU: 398 MB resident at idle
with 98 MB of weights)."""
PREPARER_OVERHEAD = 140 * 10**6
"""A chat model's preparer process (tokenizer, chat template; demo model: 133 MB)."""
ENCODER_OVERHEAD = 250 * 10**6
"""An embedding or rerank model's encoder process beyond its weights."""


def estimate(spec: ModelSpec, kind: str, size_bytes: int | None) -> int:
    """Bytes ``spec`` may take once loaded, at worst; ``size_bytes`` is its files' size (0 if unknown)."""
    weights = size_bytes or 0
    if kind in ("embedding", "rerank"):
        return weights + ENCODER_OVERHEAD
    scheduler = spec.scheduler
    kv_cache = int(scheduler.cache_size * GIB) if scheduler.num_kv_blocks == 0 else 0
    return weights + kv_cache + ENGINE_OVERHEAD + PREPARER_OVERHEAD


def resident(pids: tuple[int, ...]) -> int | None:
    """The resident memory of these processes together, in bytes (``None`` if none could be read)."""
    total, read = 0, False
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
                read = True
                break
    return total if read else None
