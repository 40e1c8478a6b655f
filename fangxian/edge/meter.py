"""The edge's Prometheus metrics, built from an injected registry (the shape of
``fangxian.core.metrics.Metrics``): requests by vendor and outcome, the latency the device
observes, fallback answers, the outbox's depth and age, when each device was last seen."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: device-observed latency: the goal is p99 ≤ 50 ms; timeouts are around 1-3 s
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2, 5)


class EdgeMetrics(NamedTuple):
    requests: Counter
    latency: Histogram
    events: Counter
    fallback_answers: Counter
    disagreements: Counter
    outbox_depth: Gauge
    outbox_oldest_seconds: Gauge
    produced: Counter
    device_last_seen: Gauge
    callbacks: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> EdgeMetrics:
        reg = registry if registry is not None else CollectorRegistry()
        return cls(
            requests=Counter(
                "fangxian_edge_requests",
                "Device requests by vendor and outcome (answered, fallback, duplicate, "
                "unknown_device, unauthenticated, malformed, rate_limited, unavailable)",
                ["vendor", "outcome"],
                registry=reg,
            ),
            latency=Histogram(
                "fangxian_edge_answer_seconds",
                "Request received → answer sent, as the device observes it, by vendor and "
                "whether the device waited for a verdict",
                ["vendor", "waited"],
                buckets=LATENCY_BUCKETS,
                registry=reg,
            ),
            events=Counter(
                "fangxian_edge_events",
                "Contract events appended to the outbox, by vendor (resends not counted)",
                ["vendor"],
                registry=reg,
            ),
            fallback_answers=Counter(
                "fangxian_edge_fallback_answers",
                "Verdicts answered from the fallback policy (the core was not in time), by "
                "community and decision",
                ["community_id", "decision"],
                registry=reg,
            ),
            disagreements=Counter(
                "fangxian_edge_fallback_disagreements",
                "Fallback answers the core's later decision disagreed with (alert raised)",
                ["community_id"],
                registry=reg,
            ),
            outbox_depth=Gauge(
                "fangxian_edge_outbox_depth", "Outbox records not yet produced", registry=reg
            ),
            outbox_oldest_seconds=Gauge(
                "fangxian_edge_outbox_oldest_seconds",
                "Age of the oldest outbox record not yet produced",
                registry=reg,
            ),
            produced=Counter(
                "fangxian_edge_produced",
                "Outbox records produced, by record",
                ["record"],
                registry=reg,
            ),
            device_last_seen=Gauge(
                "fangxian_edge_device_last_seen_seconds",
                "Unix time a registered device last sent an accepted request",
                ["device_id", "vendor"],
                registry=reg,
            ),
            callbacks=Counter(
                "fangxian_edge_callbacks",
                "Verdict callbacks to devices (Hikvision remoteCheck), by outcome",
                ["vendor", "outcome"],
                registry=reg,
            ),
        )
