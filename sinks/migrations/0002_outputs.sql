-- What the worker decides and raises, and what it could not read. Same layout rules as 0001.
--
-- decided_at / created_at may be the worker's clock, so a replay can give them a new value: they
-- stay out of the sorting keys, which hold only what a replay reproduces (ids and the cause's
-- time). A replay that crosses a partition boundary (midnight UTC for decisions, a month for dead
-- letters) can leave a second row; reports use FINAL or argMax on the id.

CREATE TABLE IF NOT EXISTS {database}.gate_decisions
(
    event_id String,
    community_id LowCardinality(String),
    gate_id LowCardinality(String),
    subject_id String,
    decision Enum8('ALLOW' = 1, 'WARN' = 2, 'RECHECK' = 3, 'DENY' = 4),
    reasons Array(LowCardinality(String)),
    decided_at DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(decided_at)
ORDER BY (community_id, gate_id, event_id)
TTL toDateTime(decided_at) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- alert_type stays a string: the contract lets AlertType grow (default OTHER), and an Enum8
-- would turn every new symbol into a rejected insert until a migration ran.
CREATE TABLE IF NOT EXISTS {database}.alerts
(
    alert_id String,
    alert_type LowCardinality(String),
    severity Enum8('INFO' = 1, 'WARNING' = 2, 'CRITICAL' = 3),
    community_id LowCardinality(String),
    gate_id LowCardinality(Nullable(String)),
    device_id LowCardinality(Nullable(String)),
    subject_id Nullable(String),
    source_event_ids Array(String),
    message_zh String,
    message_en String,
    details Map(String, String),
    event_time DateTime64(3, 'UTC'),
    created_at DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (community_id, alert_type, alert_id)
TTL toDateTime(event_time) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- original holds the raw message bytes (String is a byte string in ClickHouse; no base64).
CREATE TABLE IF NOT EXISTS {database}.dead_letters
(
    dead_letter_id String,
    reason LowCardinality(String),
    detail String,
    source_topic LowCardinality(String),
    source_partition Int32,
    source_offset Int64,
    original String,
    created_at DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(created_at)
ORDER BY (source_topic, dead_letter_id)
TTL toDateTime(created_at) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;
