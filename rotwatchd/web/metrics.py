"""``/metrics``: the daemon in the Prometheus text format, from a registry of its own.

Counters and the latency histogram are fed by each processed file; the gauges (queue depth,
power state, review backlog) are read from the daemon when scraped, so nothing runs between
scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rotwatchd.journal import OUTCOMES

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


class _GaugeCollector(Collector):
    def __init__(self, gauges: Gauges) -> None:
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
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


class DaemonMetrics:
    """The registry behind ``/metrics``. :meth:`observe` is a timed result listener."""

    def __init__(self, gauges: Gauges) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.files = Counter("rotwatchd_files", "files handled, by outcome", ["outcome"],
                             registry=self.registry)
        for outcome in OUTCOMES:
            if outcome != "in-progress":
                self.files.labels(outcome)  # present (at 0) before the first file
        self.latency = Histogram("rotwatchd_processing_seconds",
                                 "time from a worker taking a file to its result (done or "
                                 "review)", buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_GaugeCollector(gauges))

    def observe(self, outcome: str, seconds: float | None) -> None:
        self.files.labels(outcome).inc()
        if seconds is not None and outcome in ("done", "review"):
            self.latency.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
