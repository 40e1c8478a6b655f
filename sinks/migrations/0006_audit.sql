-- 审计日志 Audit log (issue 13): one row per staff action that touches personal data — a
-- contacts query, a report export, a forget, an alert acknowledgement — with who (actor), when
-- (at), what (action, subject, scope, details) and from where (origin).
--
-- Append-only: the tools only INSERT (sinks/audit.py); there is no TTL, `forget` does not list
-- this table, and in production no fangxian user holds ALTER or DELETE on it. The subject is
-- kept masked (a person reads this table) with subject_ref, a short unkeyed digest of the
-- token, so an auditor can tell repeated queries about one subject apart from others.
-- Same layout rules as 0001 (sinks/legacy.py rewrites it for 18.16).

CREATE TABLE IF NOT EXISTS {database}.audit_log
(
    audit_id String,
    at DateTime64(3, 'UTC'),
    actor String,
    action LowCardinality(String),
    subject String,
    subject_ref String,
    scope String,
    details Map(String, String),
    origin String,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (at, actor, audit_id);
