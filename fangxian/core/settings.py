"""The one settings object. Read from the environment once (``Settings.from_env``) and passed in;
agents, sinks and rules never read ``os.environ`` themselves."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

PROCESSING_GUARANTEES = ("exactly_once", "at_least_once")


class SettingError(ValueError):
    """A setting is missing or its value is unusable; ``setting`` is the variable to fix."""

    def __init__(self, setting: str, problem: str, problem_zh: str = "") -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem
        self.problem_zh = problem_zh or problem


@dataclass(frozen=True)
class Topics:
    """Kafka topic names. Defaults follow the contract; every name is configurable."""

    gate_scans: str = "gate.scans"
    temperature_readings: str = "temperature.readings"
    health_reports: str = "health.reports"
    gate_decisions: str = "gate.decisions"
    alerts: str = "alerts"
    dead_letters: str = "dead.letters"
    reports_daily: str = "reports.daily"
    residents: str = "reference.residents"
    passes: str = "reference.passes"
    vehicles: str = "reference.vehicles"
    rules: str = "reference.rules"
    staff: str = "reference.staff"
    duty: str = "reference.duty"
    escalation: str = "reference.escalation"
    alert_actions: str = "alert.actions"
    silences: str = "alert.silences"

    def with_prefix(self, prefix: str) -> Topics:
        """Every topic name with ``prefix`` in front (tests use one prefix per test)."""
        return Topics(**{f.name: prefix + getattr(self, f.name) for f in fields(self)})


@dataclass(frozen=True)
class Settings:
    """Everything a fangxian process can be configured with.

    Environment variables are ``FANGXIAN_`` + the upper-cased field name, e.g.
    ``FANGXIAN_KAFKA_BOOTSTRAP=127.0.0.1:9092``; topic names are ``FANGXIAN_TOPIC_<NAME>``.
    Any field can instead name a file holding its value, ``FANGXIAN_<NAME>_FILE`` (the Docker
    secrets convention, e.g. ``FANGXIAN_KAFKA_PASSWORD_FILE=/run/secrets/kafka_password``); the
    file's content without its trailing newline is the value. Setting both is an error.
    """

    kafka_bootstrap: str = "127.0.0.1:9092"
    # Kafka authentication (fangxian.core.kafka_security turns these into client kwargs):
    # PLAINTEXT (loopback tests, the embedded Tansu run), SASL_PLAINTEXT or SASL_SSL
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password: str = field(default="", repr=False)
    # CA bundle (PEM) the broker's TLS certificate is checked against; "" = the system's CAs
    kafka_ssl_cafile: str = ""
    # how long a client waits to reach Kafka or ClickHouse before it gives up (seconds): the
    # CLI's admin and producer clients and the ClickHouse connection. Short, so a wrong address
    # is reported in seconds instead of hanging.
    connect_timeout_s: float = 5.0
    # long CLI work (load, migrate, forget, county report) prints a progress line this often
    # when its output is not a terminal (on a terminal it draws a bar)
    progress_interval_s: float = 5.0
    # ClickHouse target: clickhouse://user:password@host:port/database or chdb:///path/to/dir
    clickhouse_url: str = "chdb://var/chdb"
    # ClickHouse as a cluster (sinks/cluster.py): the cluster's name in the servers'
    # <remote_servers>, "" = one server. Migrations then create Replicated tables with
    # Distributed tables over them ON CLUSTER; list several nodes in the URL for failover
    # (clickhouse://user:pass@ch1:9000,ch2:9000/fangxian)
    clickhouse_cluster: str = ""
    # how the sink's rows reach a cluster: "distributed" (through the Distributed tables,
    # insert_distributed_sync) or "shards" (straight to each shard's replicas by the same key)
    clickhouse_insert: str = "distributed"
    # what shares a shard, fixed by the first migration on a cluster: "community" (its rows,
    # cityHash64(community_id)) or "county" (all of a county's communities on one shard)
    clickhouse_shard_by: str = "community"
    app_id: str = "fangxian"
    topics: Topics = field(default_factory=Topics)
    event_partitions: int = 6
    reference_partitions: int = 6
    # replicas of every topic, the decide stage's internal ones included, and the
    # min.insync.replicas each topic is created with: with acks=all a write needs that many
    # replicas, so one broker of three may die without a write refused or a record lost.
    # Defaults for one broker (the demo, `fangxian run`, single-broker tests); a production
    # cluster of 3+ brokers sets 3 and 2 (docs/deploy.md; compose's `cluster` profile does).
    replication_factor: int = 1
    min_insync_replicas: int = 1
    # exactly_once: one Kafka transaction per task and batch (outputs, changelog deltas, input
    # offsets); at_least_once: produce -> flush -> commit (brokers without transactions: Tansu)
    processing_guarantee: str = "exactly_once"
    # idempotent producers (acks=all always); off only for a broker without InitProducerId
    # (the embedded Tansu demo). exactly_once needs it on.
    producer_idempotence: bool = True
    # worker web (health) and /metrics; the sink process serves /metrics on sink_metrics_port
    web_port: int = 6066
    # where the worker's web and /metrics listen: loopback by default; 0.0.0.0 in a container
    # so Prometheus can scrape it (docker-compose.yml sets it)
    bind_host: str = "127.0.0.1"
    metrics_port: int = 9108
    sink_metrics_port: int = 9109
    # hot path batching: decisions leave after at most batch_within_s
    batch_max: int = 5000
    batch_within_s: float = 0.02
    # sink batching: one insert per table per sink_flush_s or sink_batch_rows rows
    sink_batch_rows: int = 50_000
    sink_flush_s: float = 1.0
    sink_max_buffered_rows: int = 500_000
    # dead letters: stop loudly when more than this share of a window's input is invalid
    dlq_max_ratio: float = 0.5
    dlq_min_sample: int = 1000
    # personal data
    # HMAC key for resident IDs / phones / plates; required for loads
    pseudonym_key: str = field(default="", repr=False)
    retention_days: int = 90
    # who a staff tool (contacts, report, forget) records in the audit log; "" = the OS login
    staff_id: str = ""
    # where the console and the acknowledge endpoint keep audit rows ClickHouse did not take
    # (fsync'd JSON lines, replayed every few seconds; sinks/audit.py AuditTrail)
    audit_spool_dir: str = "var/audit-spool"
    default_timezone: str = "Asia/Shanghai"
    # staff console (fangxian console): the cookie key is a secret, from the environment only
    console_port: int = 6080
    console_secret: str = ""  # HMAC key of session cookies and CSRF tokens
    console_credentials_file: str = "var/console-credentials.json"  # scrypt hashes by staff id
    console_secure_cookies: bool = False  # force Secure cookies (set when TLS ends at a proxy)
    console_session_s: int = 12 * 3600
    console_capacity: str = ""  # "community_id=persons,..." occupancy limits
    console_lookback_s: int = 1800  # live feed starts this far back in alerts / alert.actions
    # event time
    allowed_lateness_s: int = 300
    # an event stamped further than this after its Kafka timestamp is clamped to it
    # (DEVICE_CLOCK_SKEW): one device's fast clock must not move its community's time
    max_clock_skew_s: int = 120
    # a decide transaction that does not finish in this time is abandoned and its task set up
    # again (new producer, restore, seek to the committed offsets)
    transaction_timeout_s: float = 30.0
    # a decide member restores every task's state before it joins its group (a warm standby,
    # as Kafka Streams' standby replicas): a member that joins or takes over a leaver's tasks
    # then reads only the changelog written since, and the gates do not wait for a restore
    decide_warm_start: bool = True
    # the decide process's collector once its reference data and state are loaded
    # (fangxian.core.gctune: default | freeze | freeze-tuned; docs/benchmark.md has the figures)
    decide_gc: str = "freeze"
    # the decide process's transactional id suffix: set it to something stable per replica
    # (a StatefulSet pod name) so a restarted replica fences its crashed predecessor at once;
    # empty: host name and process id (a crashed process's open transaction then ends by the
    # broker's transaction timeout, decide_transaction_timeout_s)
    decide_instance_id: str = ""
    # how long the broker lets a decide transaction stay open (Kafka Streams' EOS default, 10 s):
    # the longest a crashed member's open transaction holds read_committed readers back
    decide_transaction_timeout_s: float = 10.0
    # a member that stops heartbeating loses its tasks after this (the broker's minimum is 6 s)
    decide_session_timeout_s: float = 6.0

    @property
    def exactly_once(self) -> bool:
        if self.processing_guarantee not in PROCESSING_GUARANTEES:
            raise ValueError(
                f"processing_guarantee must be one of {PROCESSING_GUARANTEES}, "
                f"not {self.processing_guarantee!r}"
            )
        return self.processing_guarantee == "exactly_once"

    # -- the decide stage's internal topics and the consumer groups (docs/topology.md)
    @property
    def decide_events_topic(self) -> str:
        return f"{self.app_id}-decide-events"

    @property
    def decide_reroute_topic(self) -> str:
        """Events a third-party producer put on the wrong partition of a device topic, forwarded
        to the partition of their community (the only events that take a second hop)."""
        return f"{self.app_id}-decide-reroute"

    @property
    def decide_changelog_topic(self) -> str:
        return f"{self.app_id}-decide-changelog"

    @property
    def decide_group(self) -> str:
        return f"{self.app_id}-decide"

    @property
    def sink_group(self) -> str:
        return f"{self.app_id}-sink"

    def transactional_id(self, instance: str) -> str:
        """The decide process's one transactional id (KIP-447: fenced by the group generation,
        not by the id; a stable ``decide_instance_id`` fences a crashed predecessor at once)."""
        return f"{self.app_id}-decide-{instance}"

    # on-duty dispatcher (streams/dispatch): keys are secrets, from the environment only
    roster_key: str = ""  # AEAD key text for staff contact details (FANGXIAN_ROSTER_KEY)
    ack_link_key: str = ""  # HMAC key of acknowledge links (FANGXIAN_ACK_LINK_KEY)
    ack_base_url: str = "http://127.0.0.1:6070"  # how staff phones reach the ack endpoint
    # how staff phones reach the console: the acknowledge page links to the alert there
    # ("" = no link)
    console_base_url: str = ""
    ack_port: int = 6070
    dispatch_metrics_port: int = 9110  # the dispatcher's /metrics (fangxian dispatch, worker)
    dispatch_channels_file: str = ""  # JSON of channel targets with their secrets
    dispatch_default_channels: str = ""  # comma-separated targets for steps that name none
    dispatch_tick_s: float = 0.2
    # inhibition rules (TOML, docs/dispatch.md "Silences and inhibition"); "" = the built-in
    # rules of streams/dispatch/inhibition.py, "none" = no inhibition at all
    dispatch_inhibit_file: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "topics":
                continue
            raw = env_or_file(env, "FANGXIAN_" + f.name.upper())
            if raw is None:
                continue
            default = getattr(cls(), f.name)
            try:
                if isinstance(default, bool):
                    values[f.name] = raw.lower() in {"1", "true", "yes", "on"}
                elif isinstance(default, int):
                    values[f.name] = int(raw)
                elif isinstance(default, float):
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError as err:
                kind = type(default).__name__
                raise SettingError(
                    "FANGXIAN_" + f.name.upper(),
                    f"expected a {kind}, got {raw!r}",
                    f"应为 {kind}，实际为 {raw!r}",
                ) from err
        topic_values = {
            f.name: env["FANGXIAN_TOPIC_" + f.name.upper()]
            for f in fields(Topics)
            if "FANGXIAN_TOPIC_" + f.name.upper() in env
        }
        return cls(topics=Topics(**topic_values), **values)

    def replace(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def env_or_file(env: Mapping[str, str], name: str) -> str | None:
    """``env[name]``, or the content of the file ``env[name + "_FILE"]`` names, or None."""
    path = env.get(name + "_FILE")
    if path is None:
        return env.get(name)
    if name in env:
        raise SettingError(
            name, f"set {name} or {name}_FILE, not both", f"{name} 与 {name}_FILE 只能设置一个"
        )
    try:
        with open(path, encoding="utf-8") as secret:
            return secret.read().rstrip("\r\n")
    except OSError as err:
        raise SettingError(
            name + "_FILE",
            f"{name}_FILE={path}: cannot read it ({err.strerror})",
            f"无法读取 {path}（{err.strerror}）",
        ) from err
