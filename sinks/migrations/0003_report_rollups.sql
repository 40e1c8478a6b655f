-- Roll-ups for the reports (fangxian/reporting). Same layout rules as 0001; also: each
-- materialised view is one statement "CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.<t>_mv
-- TO {database}.<t> AS SELECT ..." — fangxian/reporting/rollups.py reads that SELECT back to
-- rebuild buckets after a subject is forgotten, so the SELECT lives here only.
--
-- Exact under redelivery: the base tables are ReplacingMergeTree on the event id, but a view
-- sees every insert, duplicates included. So no roll-up holds a count: each holds
-- uniqExactState over the id (event_id / alert_id) and over the subject, and the report reads
-- uniqExactMerge. A redelivered row adds its id to a set that already holds it, so every figure
-- stays the same; distinct subjects over many buckets or communities are a union, not a sum.
--
-- Time buckets are UTC minutes, so a local day in any time zone (whole or half hour offsets) is
-- a range of buckets. Health reports are bucketed by report_date, which is already local.
-- Each view is followed by the same SELECT as a backfill of rows written before this migration;
-- running it twice (an interrupted migration re-run) is harmless for the same reason.

CREATE TABLE IF NOT EXISTS {database}.gate_minute
(
    community_id LowCardinality(String),
    gate_id LowCardinality(String),
    minute DateTime('UTC'),
    direction Enum8('IN' = 1, 'OUT' = 2),
    subject_type Enum8('RESIDENT' = 1, 'VISITOR' = 2, 'VEHICLE' = 3, 'STAFF' = 4, 'UNKNOWN' = 5),
    passes AggregateFunction(uniqExact, String),
    subjects AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(minute)
ORDER BY (community_id, gate_id, minute, direction, subject_type)
TTL minute + INTERVAL {retention_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.gate_minute_mv TO {database}.gate_minute AS
SELECT
    community_id,
    gate_id,
    toStartOfMinute(toDateTime(event_time)) AS minute,
    direction,
    subject_type,
    uniqExactState(event_id) AS passes,
    uniqExactState(subject_id) AS subjects
FROM {database}.gate_scans
GROUP BY community_id, gate_id, minute, direction, subject_type;

INSERT INTO {database}.gate_minute
SELECT
    community_id,
    gate_id,
    toStartOfMinute(toDateTime(event_time)) AS minute,
    direction,
    subject_type,
    uniqExactState(event_id) AS passes,
    uniqExactState(subject_id) AS subjects
FROM {database}.gate_scans
GROUP BY community_id, gate_id, minute, direction, subject_type;

-- subject_known separates alerts about a subject from alerts about a device or gate, so the
-- subjects state never counts the empty string as somebody.
CREATE TABLE IF NOT EXISTS {database}.alert_minute
(
    community_id LowCardinality(String),
    minute DateTime('UTC'),
    alert_type LowCardinality(String),
    severity Enum8('INFO' = 1, 'WARNING' = 2, 'CRITICAL' = 3),
    subject_known UInt8,
    alerts AggregateFunction(uniqExact, String),
    subjects AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(minute)
ORDER BY (community_id, minute, alert_type, severity, subject_known)
TTL minute + INTERVAL {retention_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.alert_minute_mv TO {database}.alert_minute AS
SELECT
    community_id,
    toStartOfMinute(toDateTime(event_time)) AS minute,
    alert_type,
    severity,
    toUInt8(isNotNull(subject_id)) AS subject_known,
    uniqExactState(alert_id) AS alerts,
    uniqExactState(ifNull(subject_id, '')) AS subjects
FROM {database}.alerts
GROUP BY community_id, minute, alert_type, severity, subject_known;

INSERT INTO {database}.alert_minute
SELECT
    community_id,
    toStartOfMinute(toDateTime(event_time)) AS minute,
    alert_type,
    severity,
    toUInt8(isNotNull(subject_id)) AS subject_known,
    uniqExactState(alert_id) AS alerts,
    uniqExactState(ifNull(subject_id, '')) AS subjects
FROM {database}.alerts
GROUP BY community_id, minute, alert_type, severity, subject_known;

CREATE TABLE IF NOT EXISTS {database}.decision_minute
(
    community_id LowCardinality(String),
    gate_id LowCardinality(String),
    minute DateTime('UTC'),
    decision Enum8('ALLOW' = 1, 'WARN' = 2, 'RECHECK' = 3, 'DENY' = 4),
    decisions AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(minute)
ORDER BY (community_id, gate_id, minute, decision)
TTL minute + INTERVAL {retention_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.decision_minute_mv TO {database}.decision_minute AS
SELECT
    community_id,
    gate_id,
    toStartOfMinute(toDateTime(decided_at)) AS minute,
    decision,
    uniqExactState(event_id) AS decisions
FROM {database}.gate_decisions
GROUP BY community_id, gate_id, minute, decision;

INSERT INTO {database}.decision_minute
SELECT
    community_id,
    gate_id,
    toStartOfMinute(toDateTime(decided_at)) AS minute,
    decision,
    uniqExactState(event_id) AS decisions
FROM {database}.gate_decisions
GROUP BY community_id, gate_id, minute, decision;

-- One row per report and symptom, plus one row with symptom '' for every report (reports with
-- no symptom count as received too).
CREATE TABLE IF NOT EXISTS {database}.health_day
(
    community_id LowCardinality(String),
    report_date Date,
    symptom LowCardinality(String),
    reports AggregateFunction(uniqExact, String),
    residents AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(report_date)
ORDER BY (community_id, report_date, symptom)
TTL report_date + INTERVAL {retention_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.health_day_mv TO {database}.health_day AS
SELECT
    community_id,
    report_date,
    arrayJoin(arrayConcat([''], symptoms)) AS symptom,
    uniqExactState(event_id) AS reports,
    uniqExactState(resident_id) AS residents
FROM {database}.health_reports
GROUP BY community_id, report_date, symptom;

INSERT INTO {database}.health_day
SELECT
    community_id,
    report_date,
    arrayJoin(arrayConcat([''], symptoms)) AS symptom,
    uniqExactState(event_id) AS reports,
    uniqExactState(resident_id) AS residents
FROM {database}.health_reports
GROUP BY community_id, report_date, symptom;
