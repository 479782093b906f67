"""Prometheus metrics: one ``CollectorRegistry`` per app, served at ``/metrics``.

Counted as they happen: HTTP responses (a ``before_send`` hook), queue rejections, time to first token,
inter-token latency, end-to-end latency and prompt token counts (a ``GenerationRecorder`` that the
generation path in ``generation.py`` feeds). Read at scrape time from the ``ModelRegistry``: running and
waiting requests, engine restarts, model states, and what each engine counted as it stepped (generated
tokens, which include requests stopped mid-way, and speculative decoding's accepted guesses), so they
can never drift from the truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, get_args

from litestar import Request, Response, get
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from adapters.base import Usage

from .schemas import ModelState

if TYPE_CHECKING:
    from .registry import ModelEntry, ModelRegistry

MODEL_STATES: tuple[ModelState, ...] = get_args(ModelState)
UNLOAD_REASONS = ("idle", "budget", "admin", "failure")
UNMATCHED_ROUTE = "unmatched"
"""Route label of requests no route matched: one label, not one per path a scanner tries."""

# Seconds. TTFT includes queueing and the prompt, so it reaches far; token gaps are milliseconds.
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)
_ITL_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5)
_E2E_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)

_current_metrics: ContextVar[Metrics | None] = ContextVar("openarc_metrics", default=None)


class Metrics:
    """The metrics of one app; nothing here is module-global, so tests can build several apps."""

    def __init__(self, models: ModelRegistry):
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "openarc_http_requests",
            "HTTP responses by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        per_model = self._per_model
        self.queue_rejections = per_model(
            Counter, "openarc_queue_rejections", "Requests refused with 429: the model's queue was full."
        )
        self.ttft = per_model(
            Histogram,
            "openarc_time_to_first_token_seconds",
            "From the start of generation (queueing included) to the first generated text.",
            buckets=_TTFT_BUCKETS,
        )
        self.inter_token = per_model(
            Histogram,
            "openarc_inter_token_latency_seconds",
            "Time between consecutive text chunks of one choice (one engine step each).",
            buckets=_ITL_BUCKETS,
        )
        self.e2e = per_model(
            Histogram,
            "openarc_request_latency_seconds",
            "From the start of generation to its last event, for generations that finished.",
            buckets=_E2E_BUCKETS,
        )
        self.prompt_tokens = per_model(Counter, "openarc_prompt_tokens", "Prompt tokens processed.")
        self.cached_tokens = per_model(
            Counter,
            "openarc_cached_prompt_tokens",
            "Prompt tokens served from the prefix cache (where the engine counts them).",
        )
        self.registry.register(ModelCollector(models))

    def _per_model(self, kind: type, name: str, documentation: str, **options: object):
        return kind(name, documentation, ["model"], registry=self.registry, **options)

    def generation(self, model: str) -> GenerationRecorder:
        """A recorder for one generation on ``model``; its clock starts now."""
        return GenerationRecorder(self, model)

    async def count_response(self, message: Message, scope: Scope) -> None:
        """``before_send`` hook: count each HTTP response once, when its status is sent."""
        if message["type"] != "http.response.start" or scope.get("type") != "http":
            return
        route = scope.get("path_template") or UNMATCHED_ROUTE
        self.http_requests.labels(route, scope["method"], str(message["status"])).inc()

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Litestar middleware: the generation path finds this app's metrics through the request context."""

        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            token = _current_metrics.set(self)
            try:
                await app(scope, receive, send)
            finally:
                _current_metrics.reset(token)

        return middleware


class GenerationRecorder:
    """Times one generation and counts its tokens; a no-op without metrics (adapters used directly)."""

    def __init__(self, metrics: Metrics | None, model: str):
        self._metrics = metrics
        self._model = model
        self._start = time.perf_counter()
        self._last: dict[int, float] = {}  # per choice: with n > 1, choices arrive together each step

    def rejected(self) -> None:
        """The model's queue was full (429)."""
        if self._metrics:
            self._metrics.queue_rejections.labels(self._model).inc()

    def text(self, index: int) -> None:
        """Choice ``index`` produced text: the first text of the generation gives TTFT, later ones gaps."""
        if not self._metrics:
            return
        now = time.perf_counter()
        last = self._last.get(index)
        if not self._last:
            self._metrics.ttft.labels(self._model).observe(now - self._start)
        elif last is not None:
            self._metrics.inter_token.labels(self._model).observe(now - last)
        self._last[index] = now

    def finished(self, usage: Usage) -> None:
        """Generation ended normally with ``usage`` (generated tokens are counted by the engine)."""
        if not self._metrics:
            return
        self._metrics.e2e.labels(self._model).observe(time.perf_counter() - self._start)
        self._metrics.prompt_tokens.labels(self._model).inc(usage.prompt_tokens)
        if usage.cached_tokens:
            self._metrics.cached_tokens.labels(self._model).inc(usage.cached_tokens)


def recorder_for(model: str) -> GenerationRecorder:
    """The recorder for a generation on ``model`` in the current request (a no-op outside an app)."""
    return GenerationRecorder(_current_metrics.get(), model)


class ModelCollector:
    """Per-model gauges read from the registry at scrape time."""

    def __init__(self, models: ModelRegistry):
        self._models = models

    def collect(self) -> Iterator[Metric]:
        """Every model's figures now (requests, restarts, state, engine counters), read at each scrape."""
        running = GaugeMetricFamily(
            "openarc_requests_running", "Requests being generated by the engine.", labels=["model"]
        )
        waiting = GaugeMetricFamily(
            "openarc_requests_waiting", "Requests admitted and waiting for an engine slot.", labels=["model"]
        )
        restarts = CounterMetricFamily(
            "openarc_engine_restarts", "Times the model's engine was restarted.", labels=["model"]
        )
        state = GaugeMetricFamily(
            "openarc_model_state", "1 for the current state, 0 for the others.", labels=["model", "state"]
        )
        generated = CounterMetricFamily(
            "openarc_generation_tokens",
            "Tokens generated, counted by the engine as it steps (a request stopped mid-way counts too).",
            labels=["model"],
        )
        speculative_steps = CounterMetricFamily(
            "openarc_speculative_steps",
            "Speculative decoding: steps that gave a sequence tokens (one of its own plus accepted guesses).",
            labels=["model"],
        )
        accepted = CounterMetricFamily(
            "openarc_speculative_accepted_tokens",
            "Speculative decoding: guessed tokens the model accepted (tokens a step: 1 + accepted / steps).",
            labels=["model"],
        )
        for entry in self._models.entries():
            model = entry.spec.id
            activity = entry.adapter.activity() if entry.adapter is not None else None
            counts = entry.retired_counts + activity.counts if activity else entry.retired_counts
            load = activity if entry.state == "ready" else None  # requests count only on a serving model
            running.add_metric([model], load.running if load else 0)
            waiting.add_metric([model], max(load.in_flight - load.running, 0) if load else 0)
            restarts.add_metric([model], entry.restarts)
            for name in MODEL_STATES:
                state.add_metric([model, name], 1.0 if entry.state == name else 0.0)
            generated.add_metric([model], counts.generated_tokens)
            speculative_steps.add_metric([model], counts.speculative_steps)
            accepted.add_metric([model], counts.accepted_tokens)
        yield from (running, waiting, restarts, state, generated, speculative_steps, accepted)
        yield from self._residency()

    def _residency(self) -> Iterator[Metric]:
        """Loads, unloads, waits for room, and memory against the budget."""
        entries = self._models.entries()
        for kind, name, documentation, read in _PER_MODEL_RESIDENCY:
            family = kind(name, documentation, labels=["model"])
            for entry in entries:
                family.add_metric([entry.spec.id], read(entry))
            yield family
        unloads = CounterMetricFamily(
            "openarc_model_unloads",
            "Unloads by reason: idle (keep_alive), budget (room for another), admin, failure (engine died).",
            labels=["model", "reason"],
        )
        for entry in entries:
            for reason in UNLOAD_REASONS:
                unloads.add_metric([entry.spec.id, reason], entry.stats.unloads[reason])
        budget = self._models.budget()
        in_use = GaugeMetricFamily(
            "openarc_loaded_memory_bytes", "What the loading and loaded models count for, together."
        )
        in_use.add_metric([], budget.in_use(entries))
        limit = GaugeMetricFamily(
            "openarc_max_loaded_memory_bytes", "The memory budget (max_loaded_memory; absent when unset)."
        )
        if budget.max_bytes is not None:
            limit.add_metric([], budget.max_bytes)
        yield from (unloads, in_use, limit)


_PER_MODEL_RESIDENCY: tuple[tuple[type, str, str, Callable[[ModelEntry], float]], ...] = (
    (CounterMetricFamily, "openarc_model_loads", "Loads that succeeded.", lambda e: e.stats.loads),
    (
        CounterMetricFamily,
        "openarc_model_load_failures",
        "Loads that failed.",
        lambda e: e.stats.load_failures,
    ),
    (
        CounterMetricFamily,
        "openarc_model_load_seconds",
        "Time spent in loads that succeeded.",
        lambda e: e.stats.load_seconds,
    ),
    (
        CounterMetricFamily,
        "openarc_model_budget_waits",
        "Loads that waited for room under the memory budget.",
        lambda e: e.stats.budget_waits,
    ),
    (
        CounterMetricFamily,
        "openarc_model_budget_wait_seconds",
        "Time loads waited for room.",
        lambda e: e.stats.budget_wait_seconds,
    ),
    (
        GaugeMetricFamily,
        "openarc_model_memory_bytes",
        "Resident memory of the model's processes (read every 5 s while loaded).",
        lambda e: e.memory or 0,
    ),
    (
        GaugeMetricFamily,
        "openarc_model_budget_bytes",
        "What the model counts for against max_loaded_memory (its estimate, while loading or loaded).",
        lambda e: e.charge,
    ),
)
"""Per-model residency figures: the family's type, name and help, and how to read it off an entry."""


@get("/metrics", sync_to_thread=False)
def metrics_endpoint(request: Request) -> Response[bytes]:
    """Prometheus metrics (text exposition, or OpenMetrics when the scraper asks for it)."""
    metrics: Metrics = request.app.state.metrics
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    # Given as a header: Litestar would append a second charset to a text/* media type.
    return Response(encode(metrics.registry), media_type="text/plain", headers={"Content-Type": content_type})
