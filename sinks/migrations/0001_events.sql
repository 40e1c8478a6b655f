-- Incoming events. Written for current ClickHouse (verified on chdb); sinks/legacy.py rewrites it
-- for an old server. Layout rules the rewriter relies on: one column per line, TTL on its own
-- line, SETTINGS on its own line, statements end with ';' at the end of a line.
--
-- non_replicated_deduplication_window: an insert retried after a timeout that had in fact
-- landed is the same block, and is dropped on arrival instead of waiting for a merge.
-- ReplacingMergeTree: a redelivered event (same event_id, same event_time) has the same sorting
-- key and the same partition, so merges (and SELECT ... FINAL) collapse it to one row.
-- Sorting keys serve the reports: per gate per minute and contacts by gate and time read
-- (community_id, gate_id, hour); per community per day reads a community_id prefix within daily
-- partitions.

CREATE TABLE IF NOT EXISTS {database}.gate_scans
(
    event_id String,
    community_id LowCardinality(String),
    gate_id LowCardinality(String),
    device_id LowCardinality(String),
    direction Enum8('IN' = 1, 'OUT' = 2),
    subject_type Enum8('RESIDENT' = 1, 'VISITOR' = 2, 'VEHICLE' = 3, 'STAFF' = 4, 'UNKNOWN' = 5),
    subject_id String,
    household_id Nullable(String),
    method Enum8('QR' = 1, 'HEALTH_CODE' = 2, 'FACE' = 3, 'PLATE' = 4, 'CARD' = 5, 'MANUAL' = 6),
    health_code Enum8('GREEN' = 1, 'YELLOW' = 2, 'RED' = 3, 'UNKNOWN' = 4),
    face_consent Bool,
    temperature_c Nullable(Float64),
    event_time DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (community_id, gate_id, toStartOfHour(event_time), event_id)
TTL toDateTime(event_time) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {database}.temperature_readings
(
    event_id String,
    community_id LowCardinality(String),
    gate_id LowCardinality(String),
    device_id LowCardinality(String),
    subject_id Nullable(String),
    temperature_c Float64,
    ambient_c Nullable(Float64),
    sensor Enum8('INFRARED_GATE' = 1, 'INFRARED_HANDHELD' = 2, 'CONTACT' = 3),
    event_time DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (community_id, gate_id, device_id, toStartOfHour(event_time), event_id)
TTL toDateTime(event_time) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Partitioned by the day reported on, not by arrival: "who has not reported for day D" and the
-- daily roll-up read one partition.
CREATE TABLE IF NOT EXISTS {database}.health_reports
(
    event_id String,
    community_id LowCardinality(String),
    resident_id String,
    report_date Date,
    temperature_c Nullable(Float64),
    symptoms Array(LowCardinality(String)),
    event_time DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(report_date)
ORDER BY (community_id, report_date, resident_id, event_id)
TTL report_date + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;
