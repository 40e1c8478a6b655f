-- What happened to each alert after it was raised (topic alert.actions, written by the on-duty
-- dispatcher and its acknowledge endpoint): routed, sent, failed, acknowledged, escalated,
-- resolved, silenced. Same layout rules as 0001/0002. action_id is deterministic (uuid5 over
-- alert, action, delivery and attempt) and every value comes from the record, created_at
-- included, so a re-read of the topic writes the same rows; ReplacingMergeTree on action_id
-- keeps one. action stays a string for the same reason as alerts.alert_type (its enum may grow).
-- ACK_REQUESTED / RESOLVE_REQUESTED rows are the endpoint's requests (alert fields blank); the
-- reports count the ACKNOWLEDGED / RESOLVED the dispatcher answers them with.

CREATE TABLE IF NOT EXISTS {database}.alert_actions
(
    action_id String,
    alert_id String,
    community_id LowCardinality(String),
    action LowCardinality(String),
    alert_type LowCardinality(String),
    severity Enum8('INFO' = 1, 'WARNING' = 2, 'CRITICAL' = 3),
    gate_id LowCardinality(Nullable(String)),
    level Int32,
    staff_ids Array(String),
    channel LowCardinality(Nullable(String)),
    delivery_id Nullable(String),
    attempt Int32,
    group_count Int32,
    detail Map(String, String),
    alert_event_time DateTime64(3, 'UTC'),
    created_at DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(created_at)
ORDER BY (community_id, alert_id, action_id)
TTL toDateTime(created_at) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;
