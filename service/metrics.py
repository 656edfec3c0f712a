"""Prometheus metrics. Each app has its own registry, so tests and replicas never share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from service.store.models import Delivery, Outcome

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "herald_delivery_outcomes",
            "Delivery attempts by channel and resulting status",
            ["channel", "status"],
            registry=r,
        )
        self.retries = Counter(
            "herald_delivery_retries", "Attempts that failed and were scheduled again", ["channel"], registry=r
        )
        self.send_latency = Histogram(
            "herald_send_latency_seconds",
            "Time a channel took to hand one message over",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_latency = Histogram(
            "herald_created_to_submitted_seconds",
            "From delivery planned to accepted by the provider",
            ["channel", "tier"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "herald_queue_depth", "Deliveries waiting or in flight", ["channel", "status"], registry=r
        )
        self.promises_overdue = Gauge(
            "herald_promises_overdue",
            "Next updates promised to partners whose time has passed without a published notice",
            registry=r,
        )
        self.webhooks = Counter(
            "herald_webhooks", "Inbound webhooks by source and HTTP status", ["source", "status"], registry=r
        )
        self.requests = Counter(
            "herald_http_requests", "HTTP requests by method and status", ["method", "status"], registry=r
        )

    def observe_attempt(self, delivery: Delivery, outcome: Outcome) -> None:
        """The dispatcher's observer: called once per attempt with the outcome it recorded."""
        if delivery.drill:
            return  # a drill's sends are the drill's figures, never the service's
        channel = delivery.channel
        self.deliveries.labels(channel, outcome.status).inc()
        if outcome.status == "pending":
            self.retries.labels(channel).inc()
        if outcome.send_seconds is not None:
            self.send_latency.labels(channel).observe(outcome.send_seconds)
        if outcome.status == "sent" and outcome.sent_at is not None:
            self.queue_latency.labels(channel, str(delivery.tier)).observe(outcome.sent_at - delivery.created_at)

    def set_queue_depth(self, counts: dict[tuple[str, str], int]) -> None:
        self.queue_depth.clear()
        for (channel, status), count in counts.items():
            self.queue_depth.labels(channel, status).set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
