"""Per-served-entity request metrics in the Prometheus text format, and reading them back.

Updated only on the server's event loop thread, so plain counters need no lock.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from dataclasses import dataclass, field

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
        lines = ["# TYPE serving_requests_total counter"]
        for name, m in sorted(self.entities.items()):
            for status, n in sorted(m.requests.items()):
                lines.append(f'serving_requests_total{{endpoint="{endpoint}",served_entity="{name}",status="{status}"}} {n}')
        lines.append("# TYPE serving_rows_total counter")
        for name, m in sorted(self.entities.items()):
            lines.append(f'serving_rows_total{{endpoint="{endpoint}",served_entity="{name}"}} {m.rows}')
        lines.append("# TYPE serving_feature_lookup_misses_total counter")
        for name, m in sorted(self.entities.items()):
            lines.append(f'serving_feature_lookup_misses_total{{endpoint="{endpoint}",served_entity="{name}"}} '
                         f'{m.lookup_misses}')
        lines.append("# TYPE serving_request_latency_seconds histogram")
        for name, m in sorted(self.entities.items()):
            labels = f'endpoint="{endpoint}",served_entity="{name}"'
            total = 0
            for bound, n in zip(BUCKETS, m.buckets):
                total += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'serving_request_latency_seconds_bucket{{{labels},le="{le}"}} {total}')
            lines.append(f"serving_request_latency_seconds_sum{{{labels}}} {m.latency_sum:.6f}")
            lines.append(f"serving_request_latency_seconds_count{{{labels}}} {total}")
        for counter, n in sorted(self.counters.items()):
            lines += [f"# TYPE serving_{counter}_total counter", f'serving_{counter}_total{{endpoint="{endpoint}"}} {n}']
        return "\n".join(lines) + "\n"


_SAMPLE = re.compile(r'^(\w+)\{([^}]*)\}\s+(\S+)$')


@dataclass
class Snapshot:
    """One served entity's totals, read back from the Prometheus text."""

    requests: int = 0
    errors: int = 0  # 5xx: the model or server failed, not the caller
    buckets: dict[float, int] = field(default_factory=dict)

    def since(self, earlier: "Snapshot") -> "Snapshot":
        return Snapshot(self.requests - earlier.requests, self.errors - earlier.errors,
                        {b: n - earlier.buckets.get(b, 0) for b, n in self.buckets.items()})

    def quantile_bound(self, q: float) -> float:
        """The upper bound (seconds) of the bucket holding quantile q; 0 with no requests."""
        if not self.requests:
            return 0.0
        for bound in sorted(self.buckets):
            if self.buckets[bound] >= q * self.requests:
                return bound
        return float("inf")


def parse(text: str) -> dict[str, Snapshot]:
    """Per served entity totals from `render`'s output."""
    out: dict[str, Snapshot] = defaultdict(Snapshot)
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        metric, labels, value = match.groups()
        tags = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        entity = tags.get("served_entity")
        if entity is None:
            continue
        if metric == "serving_requests_total":
            out[entity].requests += int(value)
            if tags["status"].startswith("5"):
                out[entity].errors += int(value)
        elif metric == "serving_request_latency_seconds_bucket":
            out[entity].buckets[float(tags["le"])] = int(value)
    return dict(out)
