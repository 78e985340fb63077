"""Prometheus metrics of one server, in a registry of its own (two apps in one process don't clash)."""

from __future__ import annotations


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sdk_serve_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sdk_serve_request_seconds",
            "Request latency by route",
            ["route"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "sdk_serve_batch_size",
            "Tiles per engine call (the count is the number of engine calls)",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
            registry=self.registry,
        )
        self.engine_seconds = Histogram(
            "sdk_serve_engine_seconds",
            "Time of one engine call",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "sdk_serve_requests_in_flight", "Requests admitted and not yet answered", registry=self.registry
        )
        self.queue_depth = Gauge("sdk_serve_queue_depth", "Tiles waiting for the engine", registry=self.registry)
        self.rejected = Counter("sdk_serve_rejected", "Requests refused by back-pressure (503)", registry=self.registry)
        # prometheus-client checks and looks up the labels on every labels() call; a server sees few
        # distinct (route, method, status), so their children are kept here after the first request
        # (up to a bound: the method is the client's to choose).
        self._children: dict[tuple, tuple] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route))
            if len(self._children) < 256:
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_engine(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.engine_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
