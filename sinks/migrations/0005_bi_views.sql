-- Views made for BI tools (Superset, Grafana, DataEase …), read by bi_reader. Same layout rules
-- as 0001; also: each view is one statement "CREATE VIEW IF NOT EXISTS {database}.bi_<name>",
-- with its columns declared (plain types, a Chinese comment each) and a SELECT that casts to
-- exactly those types, so a BI tool sees String / UInt64 / Date / DateTime('UTC') and never
-- LowCardinality, Enum8, Nullable, AggregateFunction or DateTime64.
--
-- Figures are exact under redelivery, as in 0003: every count is uniqExact(Merge) over ids.
-- A "subjects" column is distinct within its row's bucket: adding it up over hours or gates
-- counts a person once per bucket (the union is in the base tables, not in a sum).
-- Hours are UTC (DateTime('UTC')); a BI tool shows them in the viewer's time zone. Report
-- days (report_date) are already the community's local day.
-- county_code is characters 3–8 of the community's Unified Social Credit Code (GB 32100),
-- the GB/T 2260 code of its county.
-- Subject tokens are pseudonyms, shown masked all the same: first 4 ****, last 4.
-- Each SELECT computes under short inner names and renames outside: an alias equal to a source
-- column's name (passes, community_id) would shadow that column inside its own expression.

CREATE VIEW IF NOT EXISTS {database}.bi_passes_hourly
(
    community_id String COMMENT '社区统一社会信用代码 community (GB 32100)',
    county_code String COMMENT '区县代码（信用代码第3–8位）county code (GB/T 2260)',
    gate_id String COMMENT '出入口 gate',
    hour DateTime('UTC') COMMENT '小时（UTC）hour, UTC',
    direction String COMMENT '方向 IN 进 / OUT 出',
    subject_type String COMMENT '人员类别 RESIDENT 居民 / VISITOR 访客 / VEHICLE 车辆 / STAFF 工作人员 / UNKNOWN 未知',
    passes UInt64 COMMENT '通行人次 passes',
    subjects UInt64 COMMENT '通行人数（本小时内去重）distinct subjects within the hour'
)
AS SELECT
    c AS community_id,
    substring(c, 3, 6) AS county_code,
    g AS gate_id,
    h AS hour,
    d AS direction,
    t AS subject_type,
    n AS passes,
    u AS subjects
FROM
(
    SELECT
        CAST(community_id AS String) AS c,
        CAST(gate_id AS String) AS g,
        toStartOfHour(minute) AS h,
        CAST(direction AS String) AS d,
        CAST(subject_type AS String) AS t,
        toUInt64(uniqExactMerge(passes)) AS n,
        toUInt64(uniqExactMerge(subjects)) AS u
    FROM {database}.gate_minute
    GROUP BY c, g, h, d, t
);

-- A decision with several reasons is one row per reason; an ALLOW without reasons has 'NONE'.
CREATE VIEW IF NOT EXISTS {database}.bi_decisions_by_reason
(
    community_id String COMMENT '社区统一社会信用代码 community (GB 32100)',
    county_code String COMMENT '区县代码（信用代码第3–8位）county code (GB/T 2260)',
    gate_id String COMMENT '出入口 gate',
    hour DateTime('UTC') COMMENT '判定小时（UTC）hour of the decision, UTC',
    decision String COMMENT '判定 ALLOW 放行 / WARN 提醒 / RECHECK 复测 / DENY 拒绝',
    reason String COMMENT '原因（无原因为 NONE）reason, NONE when there is none',
    decisions UInt64 COMMENT '判定次数 decisions'
)
AS SELECT
    c AS community_id,
    substring(c, 3, 6) AS county_code,
    g AS gate_id,
    h AS hour,
    d AS decision,
    r AS reason,
    n AS decisions
FROM
(
    SELECT
        CAST(community_id AS String) AS c,
        CAST(gate_id AS String) AS g,
        toStartOfHour(toDateTime(decided_at, 'UTC')) AS h,
        CAST(decision AS String) AS d,
        CAST(arrayJoin(if(empty(reasons), ['NONE'], reasons)) AS String) AS r,
        toUInt64(uniqExact(event_id)) AS n
    FROM {database}.gate_decisions
    GROUP BY c, g, h, d, r
);

CREATE VIEW IF NOT EXISTS {database}.bi_alerts_hourly
(
    community_id String COMMENT '社区统一社会信用代码 community (GB 32100)',
    county_code String COMMENT '区县代码（信用代码第3–8位）county code (GB/T 2260)',
    hour DateTime('UTC') COMMENT '小时（UTC）hour, UTC',
    alert_type String COMMENT '预警类型 alert type (FEVER_CONFIRMED 确认发热, QUARANTINE_BREACH 违反居家观察 …)',
    severity String COMMENT '级别 INFO 提示 / WARNING 警告 / CRITICAL 严重',
    alerts UInt64 COMMENT '预警条数 alerts',
    subjects UInt64 COMMENT '涉及人数（本小时内去重）distinct subjects within the hour'
)
AS SELECT
    c AS community_id,
    substring(c, 3, 6) AS county_code,
    h AS hour,
    t AS alert_type,
    s AS severity,
    n AS alerts,
    u AS subjects
FROM
(
    SELECT
        CAST(community_id AS String) AS c,
        toStartOfHour(minute) AS h,
        CAST(alert_type AS String) AS t,
        CAST(severity AS String) AS s,
        toUInt64(uniqExactMerge(alerts)) AS n,
        toUInt64(uniqExactMergeIf(subjects, subject_known = 1)) AS u
    FROM {database}.alert_minute
    GROUP BY c, h, t, s
);

-- One row per alert (a redelivered copy is folded in by GROUP BY alert_id).
CREATE VIEW IF NOT EXISTS {database}.bi_alerts
(
    alert_id String COMMENT '预警编号 alert id',
    community_id String COMMENT '社区统一社会信用代码 community (GB 32100)',
    county_code String COMMENT '区县代码（信用代码第3–8位）county code (GB/T 2260)',
    gate_id String COMMENT '出入口（无则为空）gate, empty when none',
    alert_type String COMMENT '预警类型 alert type',
    severity String COMMENT '级别 INFO 提示 / WARNING 警告 / CRITICAL 严重',
    subject_masked String COMMENT '对象（脱敏）subject token, masked',
    message_zh String COMMENT '预警内容 message (zh-CN)',
    message_en String COMMENT 'message (English)',
    event_time DateTime('UTC') COMMENT '发生时间（UTC）time of the cause, UTC'
)
AS SELECT
    a AS alert_id,
    c AS community_id,
    substring(c, 3, 6) AS county_code,
    g AS gate_id,
    t AS alert_type,
    s AS severity,
    if(length(u) = 0, '', concat(substring(u, 1, 4), '****', substring(u, length(u) - 3, 4)))
        AS subject_masked,
    mz AS message_zh,
    me AS message_en,
    e AS event_time
FROM
(
    SELECT
        alert_id AS a,
        CAST(any(community_id) AS String) AS c,
        CAST(ifNull(any(gate_id), '') AS String) AS g,
        CAST(any(alert_type) AS String) AS t,
        CAST(any(severity) AS String) AS s,
        ifNull(any(subject_id), '') AS u,
        any(message_zh) AS mz,
        any(message_en) AS me,
        toDateTime(min(event_time), 'UTC') AS e
    FROM {database}.alerts
    GROUP BY a
);

-- Residents who reported (health_day) and residents with a REPORT_OVERDUE alert, per local
-- report day: the alert's details['date'] is the day it is overdue for.
CREATE VIEW IF NOT EXISTS {database}.bi_reports_daily
(
    community_id String COMMENT '社区统一社会信用代码 community (GB 32100)',
    county_code String COMMENT '区县代码（信用代码第3–8位）county code (GB/T 2260)',
    report_date Date COMMENT '上报日期（社区本地日）report day, local to the community',
    reports_received UInt64 COMMENT '已健康上报人数 residents who reported',
    reports_overdue UInt64 COMMENT '逾期未上报人数 residents overdue'
)
AS SELECT
    c AS community_id,
    substring(c, 3, 6) AS county_code,
    d AS report_date,
    toUInt64(sum(r)) AS reports_received,
    toUInt64(sum(o)) AS reports_overdue
FROM
(
    SELECT
        CAST(community_id AS String) AS c,
        report_date AS d,
        toUInt64(uniqExactMerge(residents)) AS r,
        toUInt64(0) AS o
    FROM {database}.health_day
    WHERE symptom = ''
    GROUP BY c, d
    UNION ALL
    SELECT
        CAST(community_id AS String) AS c,
        toDate(details['date']) AS d,
        toUInt64(0) AS r,
        toUInt64(uniqExact(ifNull(subject_id, ''))) AS o
    FROM {database}.alerts
    WHERE alert_type = 'REPORT_OVERDUE'
    GROUP BY c, d
)
GROUP BY c, d;

-- The county roll-up: per county and UTC hour, what the communities under it saw. Passes and
-- alerts of different communities are different ids, so adding them up is exact.
CREATE VIEW IF NOT EXISTS {database}.bi_county_hourly
(
    county_code String COMMENT '区县代码（信用代码第3–8位）county code (GB/T 2260)',
    hour DateTime('UTC') COMMENT '小时（UTC）hour, UTC',
    communities UInt64 COMMENT '有数据的社区数 communities with data',
    entries UInt64 COMMENT '进入人次 IN passes',
    exits UInt64 COMMENT '外出人次 OUT passes',
    fevers_confirmed UInt64 COMMENT '确认发热人次 FEVER_CONFIRMED alerts',
    quarantine_breaches UInt64 COMMENT '违反居家观察 QUARANTINE_BREACH alerts',
    alerts UInt64 COMMENT '预警总数 all alerts'
)
AS SELECT
    substring(c, 3, 6) AS county_code,
    h AS hour,
    toUInt64(uniqExact(c)) AS communities,
    toUInt64(sum(i)) AS entries,
    toUInt64(sum(o)) AS exits,
    toUInt64(sum(f)) AS fevers_confirmed,
    toUInt64(sum(b)) AS quarantine_breaches,
    toUInt64(sum(a)) AS alerts
FROM
(
    SELECT
        CAST(community_id AS String) AS c,
        toStartOfHour(minute) AS h,
        toUInt64(uniqExactMergeIf(passes, direction = 'IN')) AS i,
        toUInt64(uniqExactMergeIf(passes, direction = 'OUT')) AS o,
        toUInt64(0) AS f,
        toUInt64(0) AS b,
        toUInt64(0) AS a
    FROM {database}.gate_minute
    GROUP BY c, h
    UNION ALL
    SELECT
        CAST(community_id AS String) AS c,
        toStartOfHour(minute) AS h,
        toUInt64(0) AS i,
        toUInt64(0) AS o,
        toUInt64(uniqExactMergeIf(alerts, alert_type = 'FEVER_CONFIRMED')) AS f,
        toUInt64(uniqExactMergeIf(alerts, alert_type = 'QUARANTINE_BREACH')) AS b,
        toUInt64(uniqExactMerge(alerts)) AS a
    FROM {database}.alert_minute
    GROUP BY c, h
)
GROUP BY county_code, hour;

-- Time to acknowledge: per alert the dispatcher acknowledged, from the alert's cause to the
-- first ACKNOWLEDGED (alert_actions, 0004). Unacknowledged alerts have no row here; bi_alerts
-- lists every alert.
CREATE VIEW IF NOT EXISTS {database}.bi_alert_acknowledgements
(
    alert_id String COMMENT '预警编号 alert id',
    community_id String COMMENT '社区统一社会信用代码 community (GB 32100)',
    county_code String COMMENT '区县代码（信用代码第3–8位）county code (GB/T 2260)',
    alert_type String COMMENT '预警类型 alert type',
    severity String COMMENT '级别 INFO 提示 / WARNING 警告 / CRITICAL 严重',
    event_time DateTime('UTC') COMMENT '发生时间（UTC）time of the cause, UTC',
    acknowledged_at DateTime('UTC') COMMENT '首次确认时间（UTC）first acknowledgement, UTC',
    seconds_to_acknowledge UInt64 COMMENT '确认用时（秒）seconds from the cause to the acknowledgement'
)
AS SELECT
    a AS alert_id,
    c AS community_id,
    substring(c, 3, 6) AS county_code,
    t AS alert_type,
    s AS severity,
    e AS event_time,
    k AS acknowledged_at,
    toUInt64(greatest(toInt64(k) - toInt64(e), 0)) AS seconds_to_acknowledge
FROM
(
    SELECT
        alert_id AS a,
        CAST(any(community_id) AS String) AS c,
        CAST(any(alert_type) AS String) AS t,
        CAST(any(severity) AS String) AS s,
        toDateTime(min(alert_event_time), 'UTC') AS e,
        toDateTime(min(created_at), 'UTC') AS k
    FROM {database}.alert_actions
    WHERE action = 'ACKNOWLEDGED'
    GROUP BY a
);
