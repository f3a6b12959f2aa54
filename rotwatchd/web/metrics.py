"""``/metrics``: the daemon in the Prometheus text format, from a registry of its own.

Each processed file is tallied here in plain counters (by outcome, and the latency into
histogram buckets) from the moment the page is configured; ``prometheus_client`` is imported and
its registry built only when ``/metrics`` is first asked for, so a daemon nobody scrapes does
not carry the library. The gauges (queue depth, power state, review backlog) are read from the
daemon at scrape time, so nothing runs between scrapes.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rotwatchd.service.journal import OUTCOMES

if TYPE_CHECKING:
    from prometheus_client.core import Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
POWER_STATES = ("awake", "waking", "asleep", "unmanaged", "unknown")
#: Seconds; around the model's ~25 ms (one pass) to a slow 12 MP write on a Raspberry Pi.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class Gauges:
    """What the gauges read at scrape time."""

    queue: Callable[[], dict[str, int]]  # depth, running, pending
    power_state: Callable[[], str]
    review_backlog: Callable[[], int]


class DaemonMetrics:
    """The tallies behind ``/metrics``. :meth:`observe` is a timed result listener.

    Thread-safe: workers observe while the page's thread scrapes."""

    def __init__(self, gauges: Gauges) -> None:
        self._gauges = gauges
        self._lock = threading.Lock()
        self._files = {outcome: 0 for outcome in OUTCOMES if outcome != "in-progress"}
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: above every bound
        self._latency_sum = 0.0
        self._registry: Any = None

    def observe(self, outcome: str, seconds: float | None) -> None:
        with self._lock:
            self._files[outcome] = self._files.get(outcome, 0) + 1
            if seconds is not None and outcome in ("done", "review"):
                self._buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
                self._latency_sum += seconds

    def exposition(self) -> bytes:
        """The Prometheus text (``text/plain; version=0.0.4``) of every metric, as of now."""
        from prometheus_client import CollectorRegistry, generate_latest

        if self._registry is None:  # two first scrapes at once would each build one: harmless
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Collector(self))
            self._registry = registry
        data: bytes = generate_latest(self._registry)
        return data

    def collect(self) -> Iterator[Metric]:
        """The metric families at this moment (called by the registry at each scrape)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        with self._lock:
            files, buckets, total = dict(self._files), list(self._buckets), self._latency_sum
        counter = CounterMetricFamily("rotwatchd_files", "files handled, by outcome",
                                      labels=["outcome"])
        for outcome, count in files.items():
            counter.add_metric([outcome], count)
        yield counter
        cumulative, running = [], 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), buckets, strict=True):
            running += count
            cumulative.append((_bound(bound), running))
        yield HistogramMetricFamily(
            "rotwatchd_processing_seconds",
            "time from a worker taking a file to its result (done or review)",
            buckets=cumulative, sum_value=total)
        queue = GaugeMetricFamily("rotwatchd_queue_files", "files queued, being processed, "
                                  "or waiting to settle", labels=["state"])
        for state, count in sorted(self._gauges.queue().items()):
            queue.add_metric([state], count)
        yield queue
        power = GaugeMetricFamily("rotwatchd_power_state", "1 for the current power state",
                                  labels=["state"])
        current = self._gauges.power_state()
        for state in (*POWER_STATES, *([current] if current not in POWER_STATES else [])):
            power.add_metric([state], 1.0 if state == current else 0.0)
        yield power
        yield GaugeMetricFamily("rotwatchd_review_backlog", "images waiting for a person",
                                value=self._gauges.review_backlog())


class _Collector:
    """What prometheus_client's registry calls: the tallies' :meth:`DaemonMetrics.collect`."""

    def __init__(self, metrics: DaemonMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.collect()


def _bound(value: float) -> str:
    """A bucket's upper bound as Prometheus writes it: ``0.025``, ``1.0``, ``+Inf``."""
    return "+Inf" if value == float("inf") else repr(float(value))
