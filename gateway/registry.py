"""ModelRegistry: which models exist, in which state, served by which adapter; restarts failed engines.

A model is ``loading``, ``ready``, ``restarting`` (its engine died or stalled and is being started
again, with backoff) or ``failed`` (with its reason). Clients see only ready models; a request to a
model that is not ready gets 503 (with ``Retry-After`` while it may still come back), an unknown id a
404, never a fallback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path

import msgspec

from adapters.base import Adapter, AdapterError, EngineCounts, ModelInfo

from .config import ConfigError, ModelSpec, ServerConfig
from .errors import ConflictError, ModelNotFoundError, ModelNotReadyError
from .logs import configure_logging
from .schemas import ModelState
from .sources import chat_template_text, resolve_source, servable_path

logger = logging.getLogger(__name__)

Loader = Callable[[ModelSpec, Path, ServerConfig], Adapter]
"""Builds an adapter for a spec, given the model's local path and the server's config (blocking)."""

HEALTHY_RUN_SECONDS = 60.0
"""An engine that served this long before failing starts a fresh count of failures."""
RESTART_BACKOFF = (1.0, 30.0)
"""Wait before restart attempt k: the first figure doubled k-1 times, at most the second."""


def load_openvino_genai(spec: ModelSpec, path: Path, config: ServerConfig) -> Adapter:
    """The default loader: the openvino-genai adapter, with compiled blobs cached between runs.

    The engine processes log like the server (level and text or JSON lines): they are handed the
    server's own logging setup, which they run at start.
    """
    from adapters.openvino.adapter import OpenVINOGenAIAdapter
    from adapters.openvino.encoder import EncoderAdapter
    from adapters.openvino.model_files import detect_kind
    from adapters.openvino.spec import PipelineSpec, default_properties

    setup_logging = functools.partial(configure_logging, config.log_level, config.log_format)
    kind = detect_kind(path) if spec.kind == "auto" else spec.kind
    properties = default_properties(
        spec.device, spec.properties, config.cache_path / "compiled", spec.inference_precision
    )
    if kind != "chat":
        return EncoderAdapter.load(
            spec.id,
            kind,
            str(path),
            spec.device,
            spec.max_queue,
            spec.batch_size,
            spec.batch_wait,
            setup_logging,
            properties,
        )
    speculative = spec.speculative
    draft = None
    if speculative.method == "draft_model":
        if not speculative.draft_model:
            raise ConfigError(
                f"model {spec.id}: speculative.method draft_model needs speculative.draft_model"
            )
        draft = resolve_source(speculative.draft_model, config.cache_path)
    pipeline = PipelineSpec(
        model_id=spec.id,
        path=path,
        device=spec.device,
        properties=properties,
        converted_dir=config.cache_path / "converted",
        scheduler=msgspec.structs.asdict(spec.scheduler),
        engine=spec.engine,
        chat_template=chat_template_text(spec.chat_template),
        tool_parser=spec.tool_parser,
        reasoning_parser=spec.reasoning_parser,
        prompt_lookup=speculative.method == "prompt_lookup",
        draft_path=draft,
        draft_device=speculative.draft_device,
        warm_up=spec.warm_up,
    )
    return OpenVINOGenAIAdapter.load(pipeline, spec.max_queue, spec.stall_timeout, setup_logging)


@dataclass
class ModelEntry:
    """One model the registry knows, whatever its state."""

    spec: ModelSpec
    state: ModelState
    adapter: Adapter | None = None
    error: str | None = None
    warning: str | None = None
    restarts: int = 0
    """Engine restarts since the model was loaded."""
    retired_counts: EngineCounts = EngineCounts()
    """What the model's engines that have since died had counted (its counters survive restarts)."""
    failures: int = 0
    """Engine failures in a row, each within ``HEALTHY_RUN_SECONDS`` of the previous start."""
    ready_since: float = 0.0
    configured: bool = False
    """One of the models the server was started with (config file, ``--model``), which ``/ready`` waits
    for; a model an operator loads at run time is not."""


class ModelRegistry:
    """Owns every model's adapter and state for the life of the server."""

    def __init__(self, config: ServerConfig, loader: Loader = load_openvino_genai):
        self._config = config
        self._loader = loader
        self._entries: dict[str, ModelEntry] = {}
        self._tasks: set[asyncio.Task] = set()  # asyncio keeps only weak references to running tasks

    def load_all(self) -> None:
        """Load every configured model (blocking); ``ConfigError`` with one line on the first failure."""
        for spec in self._config.models:
            entry = ModelEntry(spec, "loading", configured=True)
            self._entries[spec.id] = entry
            self._load(entry)
            if entry.state == "failed":
                raise ConfigError(f"model {spec.id!r}: {entry.error}")

    async def add(self, spec: ModelSpec, wait: bool = True) -> ModelEntry:
        """Load another model at run time; with ``wait`` return once it is ready or failed."""
        if spec.id in self._entries:
            raise ConflictError(f"A model with id '{spec.id}' is already registered; unload it first.", "id")
        entry = ModelEntry(spec, "loading")
        self._entries[spec.id] = entry
        task = self._spawn(self._load_and_watch(entry))
        if wait:
            await asyncio.shield(task)
        return entry

    async def start(self) -> None:
        """Start watching every loaded model's engine; called once the event loop runs."""
        for entry in self._entries.values():
            if entry.state == "ready":
                await self._watch(entry)

    def readiness(self) -> list[ModelEntry]:
        """Every configured model that is not ready (empty when the server is ready for its job).

        Models loaded at run time do not count: an operator's load that fails must not take the replica
        out of its load balancer (it shows in ``/admin/models``), as Kubernetes readiness means "can
        serve what it was deployed for". A configured model that an operator unloads no longer counts.
        """
        return [entry for entry in self._entries.values() if entry.configured and entry.state != "ready"]

    async def remove(self, model_id: str) -> ModelEntry:
        """Stop serving ``model_id``: new requests get 404 at once, running ones end with an error."""
        entry = self._entry(model_id)
        if entry.state == "loading":
            raise ModelNotReadyError(model_id, "loading")
        del self._entries[model_id]
        if entry.adapter is not None:
            await entry.adapter.close(f"The model '{model_id}' was unloaded while this request was running.")
        return entry

    def get(self, model_id: str) -> Adapter:
        """The adapter serving ``model_id``: 404 if unknown, 503 if it is loading or failed."""
        entry = self._entry(model_id)
        if entry.state != "ready" or entry.adapter is None:
            raise ModelNotReadyError(model_id, entry.state, entry.error)
        return entry.adapter

    def entries(self) -> list[ModelEntry]:
        """Every model known, in the order they were added."""
        return list(self._entries.values())

    def models(self) -> list[ModelInfo]:
        """Every ready model."""
        return [e.adapter.info for e in self._entries.values() if e.state == "ready" and e.adapter]

    def listed_aliases(self) -> list[ModelInfo]:
        """The aliases configured to be listed, for ready models: their model's info under the alias's name
        (patterns are never listed: they are not names a client could pick)."""
        ready = {info.id: info for info in self.models()}
        return [
            dataclasses.replace(ready[alias.model], id=alias.name)
            for alias in self._config.aliases
            if alias.listed and not alias.name.endswith("*") and alias.model in ready
        ]

    def spec(self, model_id: str) -> ModelSpec:
        """How ``model_id`` is configured (its sampling and speculative-decoding defaults, ...)."""
        return self._entry(model_id).spec

    def request_timeout(self, model_id: str) -> float | None:
        """Seconds a request to ``model_id`` may take (``None``: no limit)."""
        return self._entry(model_id).spec.request_timeout

    async def close_all(self) -> None:
        """Stop every adapter; called once when the server shuts down."""
        for task in self._tasks:
            task.cancel()
        adapters = [e.adapter for e in self._entries.values() if e.adapter is not None]
        self._entries = {}
        reason = "The server is shutting down."
        await asyncio.gather(*(adapter.close(reason) for adapter in adapters), return_exceptions=True)

    def _entry(self, model_id: str) -> ModelEntry:
        entry = self._entries.get(model_id) or self._entries.get(self.resolve_alias(model_id) or "")
        if entry is None:
            raise ModelNotFoundError(model_id)
        return entry

    def resolve_alias(self, name: str) -> str | None:
        """The model an alias names (an exact alias before a ``*`` pattern, the longest pattern first);
        ``None`` when no alias matches."""
        aliases = self._config.aliases
        exact = next((a.model for a in aliases if a.name == name), None)
        if exact is not None:
            return exact
        patterns = sorted((a for a in aliases if a.name.endswith("*")), key=lambda a: -len(a.name))
        return next((a.model for a in patterns if name.startswith(a.name[:-1])), None)

    def _load(self, entry: ModelEntry, log_failure: bool = False) -> None:
        """Resolve and load one model (blocking), leaving it ready or failed with a one-line reason."""
        try:
            source = resolve_source(entry.spec.source, self._config.cache_path)
            path, entry.warning = servable_path(
                source, entry.spec.id, self._config.cache_path, entry.spec.export
            )
            entry.adapter = self._loader(entry.spec, path, self._config)
        except (ConfigError, AdapterError) as exc:
            entry.state, entry.error = "failed", str(exc)
            if log_failure:  # at start-up the CLI reports it, once
                logger.error("model %s failed to load: %s", entry.spec.id, exc)
            return
        except Exception as exc:  # a load must never take the server down
            logger.exception("model %s failed to load", entry.spec.id)
            entry.state, entry.error = "failed", f"unexpected error: {type(exc).__name__}"
            return
        entry.state, entry.error, entry.ready_since = "ready", None, time.monotonic()

    # --- supervision ---

    def _spawn(self, work: Coroutine) -> asyncio.Task:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _load_and_watch(self, entry: ModelEntry) -> None:
        await asyncio.to_thread(self._load, entry, True)
        if entry.state == "ready":
            await self._watch(entry)

    async def _watch(self, entry: ModelEntry) -> None:
        adapter = entry.adapter
        assert adapter is not None
        await adapter.start(lambda reason: self._engine_failed(entry, adapter, reason))

    def _engine_failed(self, entry: ModelEntry, adapter: Adapter, reason: str) -> None:
        """The adapter's engine died or stalled (its requests have already been failed): restart it."""
        if self._entries.get(entry.spec.id) is not entry or entry.adapter is not adapter:
            return  # unloaded, or already replaced
        healthy = time.monotonic() - entry.ready_since >= HEALTHY_RUN_SECONDS
        entry.failures = 1 if healthy else entry.failures + 1
        entry.retired_counts += adapter.activity().counts
        entry.state, entry.error, entry.adapter = "restarting", reason, None
        self._spawn(self._restart(entry, adapter))

    async def _restart(self, entry: ModelEntry, dead: Adapter) -> None:
        await dead.close(entry.error or "the engine failed")  # reap the old process
        model_id = entry.spec.id
        while entry.failures <= entry.spec.max_restarts:
            first, most = RESTART_BACKOFF
            await asyncio.sleep(min(first * 2 ** (entry.failures - 1), most))
            if self._entries.get(model_id) is not entry:
                return  # unloaded while waiting
            entry.restarts += 1
            logger.warning("model %s: restarting its engine (attempt %d)", model_id, entry.failures)
            await asyncio.to_thread(self._load, entry, True)
            if self._entries.get(model_id) is not entry:  # unloaded while loading
                if entry.adapter is not None:
                    await entry.adapter.close("The model was unloaded.")
                return
            if entry.state == "ready":
                await self._watch(entry)
                logger.info("model %s: engine restarted", model_id)
                return
            entry.failures += 1
            entry.state = "restarting"
        entry.state = "failed"
        entry.error = f"the engine failed {entry.failures} times in a row; last: {entry.error}"
        logger.error("model %s: %s", model_id, entry.error)
