"""Prometheus metrics of one server (its own registry, so several apps in one process never collide)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
disable_created_metrics()  # no *_created series: scrapers do not need them


class Metrics:
    def __init__(self, depth_items: Callable[[], float], depth_requests: Callable[[], float]) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("ume_requests", "HTTP requests by route and status code", ["route", "code"],
                                registry=r)
        self.items = Counter("ume_items", "Items answered, by mode and outcome (ok | error)", ["mode", "outcome"],
                             registry=r)
        self.prompt_tokens = Counter("ume_prompt_tokens", "Input text tokens of embedded items", registry=r)
        self.generated_tokens = Counter("ume_generated_tokens", "Reasoning tokens generated (gen, both)",
                                        registry=r)
        self.rejected = Counter("ume_rejected", "Requests refused, by reason (limit name, queue_full, auth...)",
                                ["reason"], registry=r)
        self.latency = Histogram("ume_request_latency_seconds", "Embeddings request latency, arrival to answer",
                                 ["mode"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("ume_queue_wait_seconds", "Time a request waited before its batch started",
                                    ["mode"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_seconds = Histogram("ume_batch_seconds", "Duration of one merged encoder call", ["mode"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.batch_items = Histogram("ume_batch_items", "Items per merged encoder call", ["mode"],
                                     buckets=SIZE_BUCKETS, registry=r)
        self.batch_requests = Histogram("ume_batch_requests", "Requests merged into one encoder call", ["mode"],
                                        buckets=SIZE_BUCKETS, registry=r)
        Gauge("ume_queue_depth_items", "Items waiting in the queue", registry=r).set_function(depth_items)
        Gauge("ume_queue_depth_requests", "Requests waiting in the queue", registry=r).set_function(depth_requests)

    def render(self) -> bytes:
        return generate_latest(self.registry)
