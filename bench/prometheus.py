"""Reading OpenArc's ``/metrics`` (Prometheus text exposition) with prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
"""Every sample of one scrape, keyed by (sample name, labels)."""


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample with exactly these labels; 0 when there is none (a labelled counter not yet used)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    """The sum of a sample over all its labels (every model's)."""
    return sum(figure for (sample, _), figure in samples.items() if sample == name)
