"""Per-served-entity request metrics in the Prometheus text format, and reading them back.

Updated only on the server's event loop thread, so plain counters need no lock; the text is
written and read by prometheus_client.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import accumulate

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))


@dataclass
class EntityMetrics:
    requests: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # by status code
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    latency_sum: float = 0.0
    rows: int = 0
    lookup_misses: int = 0  # rows scored although a feature lookup found nothing for their keys

    def observe(self, status: int, seconds: float, rows: int = 0, lookup_misses: int = 0) -> None:
        self.requests[status] += 1
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.rows += rows
        self.lookup_misses += lookup_misses


class Registry:
    """All served entities' metrics of one endpoint, plus endpoint-wide counters."""

    def __init__(self) -> None:
        self.entities: dict[str, EntityMetrics] = defaultdict(EntityMetrics)
        self.counters: dict[str, int] = defaultdict(int)

    def render(self, endpoint: str) -> str:
        """The Prometheus text exposition of these metrics (written by prometheus_client)."""
        return generate_latest(_Collector(self, endpoint)).decode()


@dataclass
class _Collector:
    """prometheus_client's collector protocol over a Registry's plain counters."""

    registry: Registry
    endpoint: str

    def collect(self):
        entity = ["endpoint", "served_entity"]
        requests = CounterMetricFamily("serving_requests", "Requests answered, by status", labels=[*entity, "status"])
        rows = CounterMetricFamily("serving_rows", "Rows scored", labels=entity)
        misses = CounterMetricFamily(
            "serving_feature_lookup_misses", "Rows scored although a feature lookup found no row for their keys", labels=entity
        )
        latency = HistogramMetricFamily("serving_request_latency_seconds", "Request latency", labels=entity)
        for name, m in sorted(self.registry.entities.items()):
            labels = [self.endpoint, name]
            for status, n in sorted(m.requests.items()):
                requests.add_metric([*labels, str(status)], n)
            rows.add_metric(labels, m.rows)
            misses.add_metric(labels, m.lookup_misses)
            latency.add_metric(
                labels, list(zip((floatToGoString(b) for b in BUCKETS), accumulate(m.buckets))), sum_value=m.latency_sum
            )
        yield from (requests, rows, misses, latency)
        for counter, n in sorted(self.registry.counters.items()):
            family = CounterMetricFamily(f"serving_{counter}", f"Endpoint-wide count of {counter}", labels=["endpoint"])
            family.add_metric([self.endpoint], n)
            yield family


@dataclass
class Snapshot:
    """One served entity's totals, read back from the Prometheus text."""

    requests: int = 0
    errors: int = 0  # 5xx: the model or server failed, not the caller
    buckets: dict[float, int] = field(default_factory=dict)

    def since(self, earlier: Snapshot) -> Snapshot:
        return Snapshot(
            self.requests - earlier.requests,
            self.errors - earlier.errors,
            {b: n - earlier.buckets.get(b, 0) for b, n in self.buckets.items()},
        )

    def quantile_bound(self, q: float) -> float:
        """The upper bound (seconds) of the bucket holding quantile q; 0 with no requests."""
        if not self.requests:
            return 0.0
        for bound in sorted(self.buckets):
            if self.buckets[bound] >= q * self.requests:
                return bound
        return float("inf")


def parse(text: str) -> dict[str, Snapshot]:
    """Per served entity totals from `render`'s output (read with prometheus_client's parser)."""
    out: dict[str, Snapshot] = defaultdict(Snapshot)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            entity = sample.labels.get("served_entity")
            if entity is None:
                continue
            if sample.name == "serving_requests_total":
                out[entity].requests += int(sample.value)
                if sample.labels["status"].startswith("5"):
                    out[entity].errors += int(sample.value)
            elif sample.name == "serving_request_latency_seconds_bucket":
                out[entity].buckets[float(sample.labels["le"])] = int(sample.value)
    return dict(out)
