"""The memory budget: whether a model may load beside those loaded, and which idle one to unload first.

Pure bookkeeping over the registry's entries (``ModelEntry.charge``, ``idle``, ``last_used``); the
registry does the loading and unloading.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from .config import ServerConfig


class Held(Protocol):
    """What the budget reads of a model (``gateway.registry.ModelEntry`` has it)."""

    charge: int
    keep_alive: float | None
    last_used: float

    @property
    def idle(self) -> bool:
        """Loaded and doing nothing."""
        ...


ModelEntry = TypeVar("ModelEntry", bound=Held)


def megabytes(size: int) -> str:
    """A byte count for people."""
    return f"{size / 1e6:,.0f} MB"


@dataclass
class MemoryBudget:
    """``max_loaded_memory`` and ``max_loaded_models``, and the requests waiting for room under them."""

    max_bytes: int | None
    max_models: int | None
    waiters: int = 0
    """Loads waiting now for a loaded model to become idle."""

    @classmethod
    def from_config(cls, config: ServerConfig) -> MemoryBudget:
        """The budget ``config`` sets (no limit where it sets none)."""
        return cls(config.memory_budget(), config.max_loaded_models)

    def in_use(self, entries: Iterable[Held]) -> int:
        """Bytes held by the models loading or loaded."""
        return sum(entry.charge for entry in entries)

    def no_room(self, entry: Held, need: int, others: Iterable[Held]) -> str | None:
        """Why ``entry`` (needing ``need`` bytes) cannot load beside ``others`` now; ``None`` if it can."""
        held = [other for other in others if other is not entry and other.charge > 0]
        if self.max_models is not None and len(held) + 1 > self.max_models:
            return f"max_loaded_models is {self.max_models}"
        used = self.in_use(held)
        if self.max_bytes is not None and used + need > self.max_bytes:
            return (
                f"it needs about {megabytes(need)}, and {megabytes(used)} of max_loaded_memory "
                f"({megabytes(self.max_bytes)}) is in use"
            )
        return None

    def never_fits(self, need: int) -> str | None:
        """Why a model needing ``need`` bytes can never load, even alone; ``None`` if it can."""
        if self.max_bytes is not None and need > self.max_bytes:
            return (
                f"needs about {megabytes(need)} (files, KV cache and processes), more than all of "
                f"max_loaded_memory ({megabytes(self.max_bytes)}): raise it, or lower the model's "
                "scheduler.cache_size"
            )
        return None

    def first_to_unload(self, others: Iterable[ModelEntry]) -> ModelEntry | None:
        """The idle model to unload first to make room: models that would stay loaded for ever last,
        then the least recently used; ``None`` when every loaded model is busy."""
        idle = [entry for entry in others if entry.idle]
        if not idle:
            return None
        return min(idle, key=lambda entry: (entry.keep_alive is None, entry.last_used))
