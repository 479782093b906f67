"""Measurements of one workload and the few statistics the report prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class RequestTiming:
    """One request as the client saw it (seconds, relative to its own start)."""

    ttft: float
    token_times: list[float]
    completion_tokens: int
    prompt_tokens: int = 0
    cached_tokens: int = 0

    @property
    def gaps(self) -> list[float]:
        """Seconds between consecutive tokens: the request's inter-token latencies."""
        return [b - a for a, b in pairwise(self.token_times)]

    @property
    def decode_rate(self) -> float:
        """Tokens per second after the first one: the single-stream decode speed."""
        span = self.token_times[-1] - self.token_times[0] if len(self.token_times) > 1 else 0
        return (self.completion_tokens - 1) / span if span > 0 else float("nan")


@dataclass
class LevelResult:
    """All requests of one concurrency level."""

    concurrency: int
    wall: float
    requests: list[RequestTiming] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        """Aggregate throughput: every request's completion tokens over the level's wall time."""
        return sum(r.completion_tokens for r in self.requests) / self.wall

    @property
    def requests_per_second(self) -> float:
        """Requests completed per second of the level's wall time."""
        return len(self.requests) / self.wall

    def ttft(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the requests' times to first token."""
        return percentile([r.ttft for r in self.requests], q)

    def itl(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the inter-token gaps, every request's gaps pooled."""
        return percentile([g for r in self.requests for g in r.gaps], q)

    @property
    def decode_rate(self) -> float:
        """The median of the requests' decode rates (tokens per second after the first token)."""
        return percentile([r.decode_rate for r in self.requests], 50)


def median_run(runs: list[LevelResult]) -> LevelResult:
    """The run with the median aggregate throughput: one noisy run does not decide a ratio."""
    return sorted(runs, key=lambda run: run.tokens_per_second)[len(runs) // 2]
