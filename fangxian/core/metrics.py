"""All of fangxian's Prometheus metrics in one object, built from an injected registry
(the shape of faust's own ``sensors/prometheus.py``): tests get a fresh registry each, the
worker serves its registry on ``/metrics``."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BATCH_BUCKETS = (1, 10, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000)
# alert created → its first message: CRITICAL goes at once, the rest after a group wait
_FIRST_MESSAGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)


class Metrics(NamedTuple):
    events_in: Counter
    dead_letters: Counter
    rows_written: Counter
    sink_batch_rows: Histogram
    sink_flush_seconds: Histogram
    sink_retries: Counter
    sink_buffered_rows: Gauge
    consumer_paused: Gauge
    decisions: Counter
    alerts: Counter
    late_events: Counter
    batch_events: Histogram
    decision_lag_seconds: Histogram
    reference_records: Gauge
    # Defined here for the dashboards and alert rules (infra/grafana, infra/prometheus); the
    # stages of docs/topology.md set them: the consumer lag per group, the per-gate decision
    # count (a gate that falls silent), and the dispatcher's failed deliveries.
    consumer_lag: Gauge
    gate_decisions_by_gate: Counter
    dispatch_failures: Counter
    # the on-duty dispatcher (streams/dispatch, counted by streams/dispatch/meter.py)
    dispatch_messages: Counter
    dispatch_first_message_seconds: Histogram
    dispatch_escalations: Counter
    dispatch_acknowledgements: Counter
    dispatch_muted: Counter
    dispatch_open_alerts: Gauge
    dispatch_oldest_open_seconds: Gauge
    dispatch_breaker_open: Gauge
    # the decide stage's transactions (streams/stages/decide.py)
    decide_txn_failures: Counter
    decide_rerouted: Counter
    decide_commit_seconds: Histogram
    # the sink process waiting for ClickHouse (at start and during an outage)
    sink_waiting_for_clickhouse: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        reg = registry if registry is not None else CollectorRegistry()
        return cls(
            events_in=Counter(
                "fangxian_events_in", "Messages consumed, per topic", ["topic"], registry=reg
            ),
            dead_letters=Counter(
                "fangxian_dead_letters",
                "Messages dead-lettered, per reason",
                ["reason"],
                registry=reg,
            ),
            rows_written=Counter(
                "fangxian_rows_written",
                "Rows inserted into ClickHouse, per table",
                ["table"],
                registry=reg,
            ),
            sink_batch_rows=Histogram(
                "fangxian_sink_batch_rows",
                "Rows per ClickHouse insert",
                ["table"],
                buckets=_BATCH_BUCKETS,
                registry=reg,
            ),
            sink_flush_seconds=Histogram(
                "fangxian_sink_flush_seconds", "Seconds per sink flush (all tables)", registry=reg
            ),
            sink_retries=Counter(
                "fangxian_sink_retries",
                "Sink flushes retried because ClickHouse was unavailable",
                registry=reg,
            ),
            sink_buffered_rows=Gauge(
                "fangxian_sink_buffered_rows", "Rows waiting for the next insert", registry=reg
            ),
            consumer_paused=Gauge(
                "fangxian_consumer_paused",
                "1 while consumption is paused for backpressure",
                registry=reg,
            ),
            decisions=Counter(
                "fangxian_gate_decisions",
                "Gate decisions, per outcome",
                ["decision"],
                registry=reg,
            ),
            alerts=Counter(
                "fangxian_alerts", "Alerts raised, per type", ["alert_type"], registry=reg
            ),
            late_events=Counter(
                "fangxian_late_events",
                "Events later than the allowed lateness (stored, not windowed)",
                registry=reg,
            ),
            batch_events=Histogram(
                "fangxian_batch_events",
                "Events per processed batch",
                buckets=_BATCH_BUCKETS,
                registry=reg,
            ),
            decision_lag_seconds=Histogram(
                "fangxian_decision_lag_seconds",
                "Per batch: seconds from its oldest message's Kafka timestamp until the batch's "
                "decisions and alerts were handed to the producer",
                buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                registry=reg,
            ),
            reference_records=Gauge(
                "fangxian_reference_records",
                "Reference records held, per kind",
                ["kind"],
                registry=reg,
            ),
            consumer_lag=Gauge(
                "fangxian_consumer_lag_messages",
                "Messages between a consumer group's committed offset and the partition's end",
                ["group", "topic", "partition"],
                registry=reg,
            ),
            gate_decisions_by_gate=Counter(
                "fangxian_gate_decisions_by_gate",
                "Gate decisions, per community and gate",
                ["community_id", "gate_id"],
                registry=reg,
            ),
            dispatch_failures=Counter(
                "fangxian_dispatch_failures",
                "Alert deliveries that failed, per channel and reason",
                ["channel", "reason"],
                registry=reg,
            ),
            dispatch_messages=Counter(
                "fangxian_dispatch_messages",
                "Messages handed to a channel, per channel kind and outcome (delivered, failed)",
                ["channel", "outcome"],
                registry=reg,
            ),
            dispatch_first_message_seconds=Histogram(
                "fangxian_dispatch_first_message_seconds",
                "Seconds from an alert's created_at until its first message was delivered",
                buckets=_FIRST_MESSAGE_BUCKETS,
                registry=reg,
            ),
            dispatch_escalations=Counter(
                "fangxian_dispatch_escalations",
                "Escalations of unacknowledged alerts, per level escalated to",
                ["level"],
                registry=reg,
            ),
            dispatch_acknowledgements=Counter(
                "fangxian_dispatch_acknowledgements",
                "Alerts acknowledged by staff, per way (link, console)",
                ["via"],
                registry=reg,
            ),
            dispatch_muted=Counter(
                "fangxian_dispatch_muted",
                "Alerts recorded SILENCED and paged to nobody, by what muted them (silence, "
                "inhibition, policy)",
                ["by"],
                registry=reg,
            ),
            dispatch_open_alerts=Gauge(
                "fangxian_dispatch_open_alerts",
                "Open (unacknowledged, unresolved) alerts this dispatcher holds, per severity",
                ["severity"],
                registry=reg,
            ),
            dispatch_oldest_open_seconds=Gauge(
                "fangxian_dispatch_oldest_open_alert_seconds",
                "Age of the oldest open alert this dispatcher holds, per severity (0: none)",
                ["severity"],
                registry=reg,
            ),
            dispatch_breaker_open=Gauge(
                "fangxian_dispatch_breaker_open",
                "1 while the circuit breaker of a channel target is open",
                ["target"],
                registry=reg,
            ),
            decide_txn_failures=Counter(
                "fangxian_decide_transaction_failures",
                "Decide transactions aborted (tasks rewound to their committed state), by cause",
                ["cause"],
                registry=reg,
            ),
            decide_rerouted=Counter(
                "fangxian_decide_rerouted_events",
                "Events that arrived on a partition not owning their community (not keyed by "
                "community_id) and were forwarded to the owner",
                ["topic"],
                registry=reg,
            ),
            decide_commit_seconds=Histogram(
                "fangxian_decide_commit_seconds",
                "Time to flush and commit one decide transaction",
                buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
                registry=reg,
            ),
            sink_waiting_for_clickhouse=Gauge(
                "fangxian_sink_waiting_for_clickhouse",
                "1 while the sink cannot reach ClickHouse and is retrying (its start, migrations "
                "included, or an insert); decisions go on meanwhile",
                registry=reg,
            ),
        )
