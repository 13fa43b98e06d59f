"""Prometheus metrics of one app, in its own ``CollectorRegistry``.

A per-app registry (not prometheus_client's global one) lets several apps live in one
process (tests, a multi-model host) without "Duplicated timeseries" errors, and lets
monitoring add its collectors with ``metrics.registry.register(collector)``.
"""

from __future__ import annotations

from typing import Any

from lmforge._extras import require

__all__ = ["ServeMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServeMetrics:
    """The serving layer's counters, histograms and gauges."""

    def __init__(self) -> None:
        """Every metric of the serving layer, declared once.

        Long because it declares each metric with its help text, one after the other."""
        pc = require("prometheus_client", extra="serve", purpose="Serving metrics")
        self._pc = pc
        self.registry = pc.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = pc.Counter(
            "lmforge_http_requests_total",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = pc.Histogram(
            "lmforge_http_request_duration_seconds",
            "HTTP request latency by route template, from the first byte received to the last sent.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = pc.Histogram(
            "lmforge_batch_size_texts",
            "Texts per model call (micro-batch size).",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = pc.Histogram(
            "lmforge_batch_duration_seconds",
            "Duration of one model call.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = pc.Gauge(
            "lmforge_queue_depth_texts", "Texts queued for a model call, by model.", ["model"], registry=r
        )
        self.in_flight = pc.Gauge(
            "lmforge_in_flight_requests", "Predict requests admitted and not yet answered.", registry=r
        )
        self.rejected = pc.Counter(
            "lmforge_rejected_requests_total",
            "Predict requests refused before inference, by reason (overloaded, rate_limited, deadline).",
            ["reason"],
            registry=r,
        )
        self.predictions = pc.Counter(
            "lmforge_predictions_total",
            "Texts answered, by model and version.",
            ["model", "version"],
            registry=r,
        )
        self.model_errors = pc.Counter(
            "lmforge_model_errors_total",
            "Failed model calls, by model and version.",
            ["model", "version"],
            registry=r,
        )
        self.canary_rollbacks = pc.Counter(
            "lmforge_canary_rollbacks_total", "Canaries rolled back automatically.", ["model"], registry=r
        )
        self.explanations = pc.Counter(
            "lmforge_explanations_total", "Explanations answered, by method.", ["method"], registry=r,
        )
        self.generations = pc.Counter(
            "lmforge_generations_total",
            "Generation requests ended, by model, version and how (stop, length, deadline, cancelled, error).",
            ["model", "version", "reason"],
            registry=r,
        )
        self.generated_tokens = pc.Counter(
            "lmforge_generated_tokens_total", "Tokens generated, by model and version.", ["model", "version"],
            registry=r,
        )
        self.prompt_tokens = pc.Counter(
            "lmforge_prompt_tokens_total", "Prompt tokens of ended generation requests, by model and version.",
            ["model", "version"], registry=r,
        )
        self.tokens_per_s = pc.Gauge(
            "lmforge_generation_tokens_per_second",
            "Decode rate of a version's scheduler (tokens of all running rows per second, smoothed).",
            ["model", "version"], registry=r,
        )
        self.tokens_reserved = pc.Gauge(
            "lmforge_generation_tokens_reserved",
            "Tokens (prompt + max_new_tokens) reserved by admitted generation requests (generation.token_budget).",
            registry=r,
        )
        self.models_loaded = pc.Gauge(
            "lmforge_model_loaded",
            "1 for each loaded model version and its role.",
            ["model", "version", "role"],
            registry=r,
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return self._pc.generate_latest(self.registry), self._pc.CONTENT_TYPE_LATEST

    def register(self, collector: Any) -> None:
        """Add a collector (e.g. monitoring's) to this app's registry."""
        self.registry.register(collector)

    def unregister(self, collector: Any) -> None:
        self.registry.unregister(collector)
