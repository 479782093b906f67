"""ModelRegistry: every model the server can serve, its state and adapter; loads, unloads and restarts.

A model is ``unloaded`` (listed, loaded on its first request), ``loading``, ``ready``, ``restarting``
(its engine died or stalled and is being started again, with backoff) or ``failed`` (with its reason).
The models are those of the config and of the model folders (``gateway.catalog``), plus those an
operator loads through ``/admin``. An unknown id is a 404, never a fallback.

A request holds its model with ``use``: an unloaded model is loaded then (requests that arrive during
the load wait for the same load), and a model is idle only when no request holds it and its engine has
nothing in flight. An idle model is unloaded after its ``keep_alive``; a load that would pass the memory
budget (``gateway.budget``) first unloads idle models, least recently used first, or waits for one to
become idle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from adapters.base import Adapter, AdapterError, EngineCounts, ModelInfo, ModelLoadError

from .budget import MemoryBudget
from .catalog import CatalogEntry, build_catalog
from .config import ConfigError, Duration, ModelSpec, ServerConfig, parse_duration
from .errors import (
    ConflictError,
    InvalidRequestError,
    MemoryBudgetError,
    ModelLoadFailedError,
    ModelNotFoundError,
    ModelNotReadyError,
    RequestTimeoutError,
    ServiceUnavailableError,
)
from .loader import Loader, load_openvino_genai
from .memory import estimate, resident
from .schemas import ModelState
from .sources import resolve_source, servable_path

logger = logging.getLogger(__name__)

HEALTHY_RUN_SECONDS = 60.0
"""An engine that served this long before failing starts a fresh count of failures."""
RESTART_BACKOFF = (1.0, 30.0)
"""Wait before restart attempt k: the first figure doubled k-1 times, at most the second."""
TRANSIENT_RETRY_SECONDS = 30.0
"""A model whose load process died (rather than refusing its files) is tried again after this long."""
KEEP_ALIVE_TICK = 0.25
"""Seconds between two looks at which models are idle (the resolution of ``keep_alive``)."""
MEMORY_READ_TICKS = 20
"""Read the loaded models' resident memory every this many ticks (5 s)."""


@dataclass
class LoadStats:
    """What happened to a model's loads and unloads since the server started (for metrics)."""

    loads: int = 0
    load_failures: int = 0
    load_seconds: float = 0.0
    """Time spent loading, summed over loads that succeeded."""
    last_load_seconds: float | None = None
    unloads: Counter[str] = field(default_factory=Counter)
    """Unloads by reason: ``idle``, ``budget``, ``admin``, ``failure``."""
    budget_waits: int = 0
    """Loads that had to wait for room under the memory budget."""
    budget_wait_seconds: float = 0.0


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
    for if it is preloaded; a model an operator loads at run time is not."""
    in_catalog: bool = False
    """Configured or found in a model folder: unloading it leaves it listed (``unloaded``); a model
    loaded through ``/admin`` is forgotten when unloaded."""
    path: Path | None = None
    kind: str = "auto"
    size_bytes: int | None = None
    context_length: int | None = None
    keep_alive: float | None = None
    """Seconds the model stays loaded once idle; ``None``: for ever."""
    users: int = 0
    """Requests holding the model (between looking it up and the end of their handler)."""
    last_used: float = 0.0
    idle_since: float | None = None
    charge: int = 0
    """Bytes held against the memory budget while the model loads or is loaded (its estimate)."""
    memory: int | None = None
    """Its processes' resident memory, last read."""
    load_task: asyncio.Task | None = None
    no_room: str | None = None
    """Why the model's load waits for room under the budget, while it does."""
    closing: asyncio.Task | None = None
    failed_transient: bool = False
    """Its load process died (killed, out of memory) rather than refusing its files: 503, tried again
    after ``TRANSIENT_RETRY_SECONDS``."""
    failed_engine: bool = False
    """Its engine kept failing after it had loaded (``max_restarts`` exhausted): 503, tried again once its
    files change or an operator loads it."""
    failed_at: float = 0.0
    failed_files: tuple[int, int] | None = None
    """The model's files (newest change, total size) when it failed: a failed model loads again once
    they change."""
    stats: LoadStats = field(default_factory=LoadStats)

    @property
    def idle(self) -> bool:
        """Loaded, held by no request, with nothing in flight in its engine."""
        if self.state != "ready" or self.adapter is None or self.users:
            return False
        return self.adapter.activity().in_flight == 0

    def unloads_at(self) -> float | None:
        """When the idle timer will unload the model (Unix time), if it is running."""
        if self.idle_since is None or self.keep_alive is None or self.state != "ready":
            return None
        return time.time() + (self.idle_since + self.keep_alive - time.monotonic())


@dataclass(frozen=True)
class Served:
    """A model held for one request: its adapter, its settings, and the time left of the request."""

    adapter: Adapter
    spec: ModelSpec
    timeout: float | None
    """Seconds the request has left (its ``request_timeout`` less the time it waited for a load)."""


class ModelRegistry:
    """Owns every model's adapter and state for the life of the server."""

    def __init__(self, config: ServerConfig, loader: Loader = load_openvino_genai):
        self._config = config
        self._loader = loader
        self._budget = MemoryBudget.from_config(config)
        self._default_keep_alive = parse_duration(config.keep_alive)
        self._entries: dict[str, ModelEntry] = {}
        self._tasks: set[asyncio.Task] = set()  # asyncio keeps only weak references to running tasks
        self._closed = False
        for found in build_catalog(config):
            self._entries[found.spec.id] = self._catalog_entry(found)
        for alias in config.aliases:
            if alias.model not in self._entries:
                raise ConfigError(
                    f"alias {alias.name!r} names the model {alias.model!r}, which is neither configured "
                    "nor in a model folder"
                )

    def _catalog_entry(self, found: CatalogEntry) -> ModelEntry:
        entry = ModelEntry(
            found.spec,
            "unloaded",
            configured=found.configured,
            in_catalog=True,
            path=found.path,
            kind=found.kind,
            size_bytes=found.size_bytes,
            context_length=found.context_length,
        )
        entry.keep_alive = self._keep_alive_of(found.spec)
        return entry

    def _keep_alive_of(self, spec: ModelSpec) -> float | None:
        if spec.keep_alive is not None:
            return parse_duration(spec.keep_alive)
        return None if spec.preload else self._default_keep_alive

    # --- start and stop ---

    def load_all(self) -> None:
        """Load every preloaded model (blocking); ``ConfigError`` with one line on the first failure."""
        for entry in self._entries.values():
            if not entry.spec.preload:
                continue
            no_room = self._budget.no_room(entry, self._entry_estimate(entry), self._entries.values())
            if no_room is not None:
                raise ConfigError(f"model {entry.spec.id!r} cannot be preloaded: {no_room}")
            entry.state, entry.charge = "loading", self._entry_estimate(entry)
            self._load(entry)
            if entry.state == "failed":
                raise ConfigError(f"model {entry.spec.id!r}: {entry.error}")
            self._measure(entry)

    async def start(self) -> None:
        """Start watching every loaded model's engine and the idle timers; once the event loop runs."""
        for entry in self._entries.values():
            if entry.state == "ready":
                await self._watch(entry)
        self._spawn(self._keep_alive_loop())

    async def close_all(self) -> None:
        """Stop every adapter; called once when the server shuts down."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        adapters = [e.adapter for e in self._entries.values() if e.adapter is not None]
        self._entries = {}
        reason = "The server is shutting down."
        await asyncio.gather(*(adapter.close(reason) for adapter in adapters), return_exceptions=True)

    # --- serving requests ---

    @asynccontextmanager
    async def use(self, model_id: str, keep_alive: Duration | None = None) -> AsyncIterator[Served]:
        """Hold ``model_id`` for a request, loading it first if it is not loaded.

        The model is not unloaded while held; a streamed answer returned from inside the block is in its
        engine by then, which keeps the model busy until it ends. ``keep_alive`` (the request's own, as
        Ollama's) sets how long the model stays loaded once idle from now on, unless the model is
        preloaded: the operator chose to keep that one loaded, and no client may unload it.

        Raises ``ModelNotFoundError`` (404), ``ModelLoadFailedError`` (400: its files cannot be loaded),
        ``ModelNotReadyError`` or ``MemoryBudgetError`` (503), ``RequestTimeoutError`` (408: still loading
        when the request's time ran out).
        """
        entry = self._entry(model_id)
        seconds = _request_keep_alive(keep_alive)
        timeout = entry.spec.request_timeout
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        entry.users += 1
        try:
            adapter = await self._serving_adapter(entry, deadline)
            if keep_alive is not None and not entry.spec.preload:  # a preloaded model is the operator's
                entry.keep_alive = seconds
            left = None if deadline is None else max(deadline - loop.time(), 0.001)
            yield Served(adapter, entry.spec, left)
        finally:
            entry.users -= 1
            entry.last_used = time.monotonic()

    async def _serving_adapter(self, entry: ModelEntry, deadline: float | None) -> Adapter:
        model_id = entry.spec.id
        while True:
            if entry.state == "ready" and entry.adapter is not None:
                return entry.adapter
            if entry.state == "restarting":
                raise ModelNotReadyError(model_id, "restarting", entry.error)
            if entry.state == "failed":
                if not self._may_retry(entry):
                    raise _load_failure(entry)
                entry.state = "unloaded"
            if entry.state == "unloaded":
                if self._closed:
                    raise ServiceUnavailableError("The server is shutting down.")
                entry.state, entry.error = "loading", None
                entry.load_task = self._spawn(self._load_on_demand(entry, deadline))
            if entry.load_task is None:
                raise ModelNotReadyError(model_id, "loading")
            await self._wait_for_load(entry, entry.load_task, deadline)

    async def _wait_for_load(self, entry: ModelEntry, task: asyncio.Task, deadline: float | None) -> None:
        """Wait for the entry's load (the same load for every request), up to this request's deadline."""
        model_id = entry.spec.id
        remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
        try:
            if remaining is not None and remaining <= 0:
                raise TimeoutError
            await asyncio.wait_for(asyncio.shield(task), remaining)
        except TimeoutError:
            if entry.no_room is not None:  # still waiting for room, not loading: the budget's fault
                raise MemoryBudgetError(_no_room_in_time(model_id, entry.no_room)) from None
            raise RequestTimeoutError(
                f"The model '{model_id}' was still loading when the request's time "
                f"({entry.spec.request_timeout:g} s) ran out; it goes on loading."
            ) from None
        if entry.state == "loading" or (entry.state == "ready" and entry.adapter is None):
            raise ModelNotReadyError(model_id, "loading")  # the load was abandoned (server stopping)

    def entries(self) -> list[ModelEntry]:
        """Every model known, in the order they were added."""
        return list(self._entries.values())

    def entry(self, model_id: str) -> ModelEntry:
        """The model called ``model_id`` (or an alias of it); 404 if there is none."""
        return self._entry(model_id)

    def models(self) -> list[ModelInfo]:
        """Every ready model."""
        return [e.adapter.info for e in self._entries.values() if e.state == "ready" and e.adapter]

    def listed_aliases(self) -> list[tuple[str, ModelEntry]]:
        """The aliases configured to be listed, each with its model's entry (patterns are never listed:
        they are not names a client could pick)."""
        return [
            (alias.name, self._entries[alias.model])
            for alias in self._config.aliases
            if alias.listed and not alias.name.endswith("*") and alias.model in self._entries
        ]

    def readiness(self) -> list[ModelEntry]:
        """Every preloaded configured model that cannot serve (empty when the server is ready for its job).

        An unloaded model can serve (its first request loads it); a failed or restarting one cannot.
        Models loaded at run time do not count: an operator's load that fails must not take the replica
        out of its load balancer (it shows in ``/admin/models``), as Kubernetes readiness means "can serve
        what it was deployed for". A model an operator unloads no longer counts.
        """
        return [
            entry
            for entry in self._entries.values()
            if entry.configured and entry.spec.preload and entry.state in ("failed", "restarting")
        ]

    def budget(self) -> MemoryBudget:
        """The memory budget the registry keeps to."""
        return self._budget

    # --- operators ---

    async def add(self, spec: ModelSpec, wait: bool = True) -> ModelEntry:
        """Load another model at run time; with ``wait`` return once it is ready or failed."""
        if spec.id in self._entries:
            raise ConflictError(f"A model with id '{spec.id}' is already registered; unload it first.", "id")
        entry = ModelEntry(spec, "loading", keep_alive=self._keep_alive_of(spec))
        self._entries[spec.id] = entry
        timeout = spec.request_timeout
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        entry.load_task = self._spawn(self._load_on_demand(entry, deadline))
        if wait:
            await asyncio.shield(entry.load_task)  # no room under the budget: a 503 saying so
        return entry

    async def load(self, model_id: str) -> ModelEntry:
        """Load a known model now (again, if it failed) and wait until it is ready or failed."""
        entry = self._entry(model_id)
        if entry.state == "failed":
            entry.state, entry.failed_files = "unloaded", None
        try:
            async with self.use(model_id):
                pass
        except ModelLoadFailedError:
            pass  # the entry says why
        return entry

    async def remove(self, model_id: str) -> ModelEntry:
        """Stop serving ``model_id``: running requests end with an error. A model of the catalog stays
        listed as ``unloaded`` (a failed one may then be tried again); one loaded through ``/admin`` is
        forgotten, its id free again."""
        entry = self._entry(model_id)
        if entry.state == "loading":
            raise ModelNotReadyError(entry.spec.id, "loading")
        if not entry.in_catalog:
            del self._entries[entry.spec.id]
        if entry.adapter is not None:
            await self._unload(entry, "admin")
        elif entry.closing is None:
            entry.charge = 0  # failed or restarting: nothing runs, nothing to wait for
        entry.state, entry.error, entry.failed_files = "unloaded", None, None
        return entry

    # --- aliases ---

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

    # --- loading ---

    def _entry_estimate(self, entry: ModelEntry) -> int:
        return estimate(entry.spec, entry.kind, entry.size_bytes)

    async def _load_on_demand(self, entry: ModelEntry, deadline: float | None) -> None:
        """Make room under the budget, then load; leaves the entry ready, failed, or unloaded (no room)."""
        model_id = entry.spec.id
        try:
            if entry.closing is not None:
                await entry.closing  # its previous engine's memory is not free until it has exited
            await self._make_room(entry, deadline)
        except BaseException:
            if entry.state == "loading":
                entry.state = "unloaded"
            if not entry.in_catalog and self._entries.get(model_id) is entry:
                del self._entries[model_id]
            raise
        logger.info("model %s: loading (%s)", model_id, "on first use" if entry.in_catalog else "admin")
        await asyncio.to_thread(self._load, entry, True)
        if self._entries.get(model_id) is not entry or self._closed:  # unloaded or shut down meanwhile
            if entry.adapter is not None:
                await entry.adapter.close("The model was unloaded.")
            entry.adapter, entry.charge, entry.state = None, 0, "unloaded"
            return
        if entry.state == "ready":
            self._measure(entry)
            await self._watch(entry)

    async def _make_room(self, entry: ModelEntry, deadline: float | None) -> None:
        """Hold the entry's estimate against the budget, unloading idle models (least recently used
        first) or waiting for one to become idle; ``MemoryBudgetError`` when there is no room in time."""
        need = self._entry_estimate(entry)
        loop = asyncio.get_running_loop()
        waited_from: float | None = None
        try:
            while True:
                others = [e for e in self._entries.values() if e is not entry]
                no_room = self._budget.no_room(entry, need, others)
                if no_room is None:
                    entry.charge = need
                    return
                never = self._budget.never_fits(need)
                if never is not None:
                    raise MemoryBudgetError(f"The model '{entry.spec.id}' {never}.", retry_after=None)
                victim = self._budget.first_to_unload(others)
                if victim is not None:
                    logger.info(
                        "model %s: unloading %s to make room (%s)", entry.spec.id, victim.spec.id, no_room
                    )
                    await self._unload(victim, "budget")
                    continue
                if waited_from is None:
                    if self._budget.waiters >= self._config.max_load_waiters:
                        raise MemoryBudgetError(
                            f"No room to load the model '{entry.spec.id}': {no_room}, every loaded model "
                            "is busy, and the queue of loads waiting for room is full."
                        )
                    waited_from = loop.time()
                    self._budget.waiters += 1
                    entry.stats.budget_waits += 1
                    logger.info(
                        "model %s: waiting for a loaded model to become idle (%s)", entry.spec.id, no_room
                    )
                if deadline is not None and loop.time() >= deadline:
                    raise MemoryBudgetError(_no_room_in_time(entry.spec.id, no_room))
                entry.no_room = no_room
                await asyncio.sleep(KEEP_ALIVE_TICK)
        finally:
            entry.no_room = None
            if waited_from is not None:
                self._budget.waiters -= 1
                waited = loop.time() - waited_from
                entry.stats.budget_wait_seconds += waited
                logger.info("model %s: waited %.1f s for room", entry.spec.id, waited)

    def _load(self, entry: ModelEntry, log_failure: bool = False) -> None:
        """Resolve and load one model (blocking), leaving it ready or failed with a one-line reason."""
        started = time.monotonic()
        try:
            source = resolve_source(entry.spec.source, self._config.cache_path)
            path, entry.warning = servable_path(
                source, entry.spec.id, self._config.cache_path, entry.spec.export
            )
            entry.path = entry.path or path
            entry.adapter = self._loader(entry.spec, path, self._config)
        except (ConfigError, AdapterError) as exc:
            self._failed(entry, str(exc), isinstance(exc, ModelLoadError) and exc.transient)
            if log_failure:  # at start-up the CLI reports it, once
                logger.error("model %s failed to load: %s", entry.spec.id, exc)
            return
        except Exception as exc:  # a load must never take the server down
            logger.exception("model %s failed to load", entry.spec.id)
            self._failed(entry, f"unexpected error: {type(exc).__name__}", transient=True)
            return
        took = time.monotonic() - started
        entry.stats.loads += 1
        entry.stats.load_seconds += took
        entry.stats.last_load_seconds = took
        info = entry.adapter.info
        entry.kind, entry.context_length = info.kind, info.context_length or entry.context_length
        entry.charge = entry.charge or self._entry_estimate(entry)  # a restart after a failed attempt
        entry.state, entry.error, entry.ready_since = "ready", None, time.monotonic()
        entry.failed_files, entry.idle_since = None, None

    def _failed(self, entry: ModelEntry, reason: str, transient: bool) -> None:
        entry.state, entry.error, entry.adapter, entry.charge = "failed", reason, None, 0
        entry.failed_transient, entry.failed_engine, entry.failed_at = transient, False, time.monotonic()
        entry.failed_files = _files_signature(entry.path)
        entry.stats.load_failures += 1

    def _may_retry(self, entry: ModelEntry) -> bool:
        """A failed model loads again once its files change, or after a while if its load process died."""
        if entry.failed_transient:
            return time.monotonic() - entry.failed_at >= TRANSIENT_RETRY_SECONDS
        return entry.failed_files is not None and _files_signature(entry.path) != entry.failed_files

    def _measure(self, entry: ModelEntry) -> None:
        if entry.adapter is not None:
            entry.memory = resident(entry.adapter.info.pids)

    # --- unloading ---

    async def _unload(self, entry: ModelEntry, reason: str) -> None:
        """Stop the model's engine (running requests end with an error) and free its share of the budget."""
        closing = self._begin_unload(entry, reason)
        if closing is not None:
            await asyncio.shield(closing)

    def _begin_unload(self, entry: ModelEntry, reason: str) -> asyncio.Task | None:
        """Mark the model unloaded now (no request can pick it up from here on) and start closing its
        engine; its share of the budget is freed once the engine has exited."""
        adapter = entry.adapter
        entry.adapter, entry.state, entry.idle_since, entry.memory = None, "unloaded", None, None
        entry.stats.unloads[reason] += 1
        logger.info("model %s: unloaded (%s)", entry.spec.id, reason)
        if adapter is None:
            entry.charge = 0
            return None

        async def close() -> None:
            try:
                await adapter.close(f"The model '{entry.spec.id}' was unloaded ({reason}).")
            finally:
                entry.charge, entry.closing = 0, None

        entry.closing = self._spawn(close())
        return entry.closing

    async def _keep_alive_loop(self) -> None:
        """Unload models idle past their ``keep_alive``; read the loaded models' memory now and then."""
        ticks = 0
        while True:
            await asyncio.sleep(KEEP_ALIVE_TICK)
            ticks += 1
            now = time.monotonic()
            for entry in list(self._entries.values()):
                if ticks % MEMORY_READ_TICKS == 0:
                    self._measure(entry)
                if not entry.idle:
                    entry.idle_since = None
                    continue
                if entry.idle_since is None:
                    entry.idle_since = now
                if entry.keep_alive is not None and now - entry.idle_since >= entry.keep_alive:
                    self._begin_unload(entry, "idle")  # at once: no request may pick it up meanwhile

    # --- supervision ---

    def _spawn(self, work: Coroutine) -> asyncio.Task:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._tasks.discard)
        return task

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
        entry.stats.unloads["failure"] += 1
        self._spawn(self._restart(entry, adapter))

    async def _restart(self, entry: ModelEntry, dead: Adapter) -> None:
        await dead.close(entry.error or "the engine failed")  # reap the old process
        model_id = entry.spec.id

        def given_up() -> bool:  # unloaded (or forgotten) while waiting or loading
            return self._entries.get(model_id) is not entry or entry.state != "restarting"

        while entry.failures <= entry.spec.max_restarts:
            first, most = RESTART_BACKOFF
            await asyncio.sleep(min(first * 2 ** (entry.failures - 1), most))
            if given_up():
                return
            entry.restarts += 1
            logger.warning("model %s: restarting its engine (attempt %d)", model_id, entry.failures)
            await asyncio.to_thread(self._load, entry, True)
            if self._entries.get(model_id) is not entry:
                if entry.adapter is not None:
                    await entry.adapter.close("The model was unloaded.")
                return
            if entry.state == "ready":
                self._measure(entry)
                await self._watch(entry)
                logger.info("model %s: engine restarted", model_id)
                return
            entry.failures += 1
            entry.state = "restarting"
        self._failed(entry, f"the engine failed {entry.failures} times in a row; last: {entry.error}", False)
        entry.failed_engine = True
        logger.error("model %s: %s", model_id, entry.error)


def _request_keep_alive(value: Duration | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="keep_alive") from None


def _no_room_in_time(model_id: str, no_room: str) -> str:
    return (
        f"No room to load the model '{model_id}': {no_room}, and no loaded model became idle within the "
        "request's timeout."
    )


def _load_failure(entry: ModelEntry) -> Exception:
    if entry.failed_engine:  # the files loaded; the engine would not stay up: the server's trouble
        return ModelNotReadyError(entry.spec.id, "failed", entry.error)
    if entry.failed_transient:
        return ServiceUnavailableError(
            f"The model '{entry.spec.id}' failed to load: {entry.error}",
            param="model",
            headers={"Retry-After": str(int(TRANSIENT_RETRY_SECONDS))},
        )
    return ModelLoadFailedError(entry.spec.id, entry.error)


def _files_signature(path: Path | None) -> tuple[int, int] | None:
    """The newest change and total size of a model's files: what tells that they were replaced."""
    if path is None:
        return None
    try:
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
        stats = [f.stat() for f in files]
    except OSError:
        return None
    return (max((s.st_mtime_ns for s in stats), default=0), sum(s.st_size for s in stats))


def _settled(task: asyncio.Task) -> None:
    """Mark a task's exception as seen: the requests waiting on a load get it themselves, if any."""
    if not task.cancelled():
        task.exception()
