"""``fangxian doctor``: 部署自检 — is everything a deployment needs there, and if not, what to fix.

The checks run in this order, each a row of the table (✔ ok, ✗ missing or wrong, ! worth a look
but not needed, – not checked because an earlier check failed):

1. Kafka reachable, and its version (inferred from the broker's ApiVersions answer);
2. every topic of ``infra.topics.topic_specs`` present with the expected partitions, cleanup
   policy, replication factor and ``min.insync.replicas``; a partition with fewer in-sync
   replicas than replicas (a broker away) is a "!", one below ``min.insync.replicas`` (writes
   refused) a ✗;
3. the consumer groups of docs/topology.md and their lag (a group that never ran is a "!");
4. ClickHouse reachable, and its version;
5. every migration of ``sinks/migrations`` applied;
6. the pseudonym key set (and the roster key of the dispatcher: a "!" when missing);
7. this machine's clock against the broker's (one record to a LogAppendTime scratch topic);
8. credentials and ACLs: with SASL, the configured principal can describe its topics;
9. the gate edge, when this deployment runs one (``FANGXIAN_EDGE_REGISTER`` set): its device
   register loads, it answers on its port and is connected to Kafka, its outbox is draining.

Exit 0 only when no row is ✗ (1 otherwise). ``--format json`` gives the rows to a program.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from fangxian.cli.errors import PROBLEMS_FOUND, CliError, classify, masked_url
from fangxian.core.settings import Settings

OK, FAIL, WARN, SKIP = "ok", "fail", "warn", "skip"
MARKS = {OK: "✔", FAIL: "✗", WARN: "!", SKIP: "–"}
MAX_CLOCK_SKEW_S = 2.0  # event times are produce times; the worker compares them with its clock
MIN_KEY_CHARS = 16
CLOCK_TOPIC_SUFFIX = "-doctor-clock"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    result: str
    fix: str = ""


def expected_groups(settings: Settings) -> list[str]:
    """The consumer groups of docs/topology.md: decide, sink, dispatch."""
    return [settings.decide_group, settings.sink_group, f"{settings.app_id}-dispatch"]


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """Security options for the Kafka clients (``fangxian.core.kafka_security``)."""
    from fangxian.core.kafka_security import kafka_client_kwargs

    return kafka_client_kwargs(settings)


def _failed(name: str, err: BaseException, settings: Settings) -> Check:
    failure: CliError = classify(err, settings)
    return Check(name, FAIL, f"{failure.kind.zh} {failure.kind.en}", f"{failure.zh} / {failure.en}")


def _replication_problems(spec: Any, state: Any) -> list[str]:
    """What is wrong with a topic's replicas against its spec (``infra.topics``)."""
    problems = []
    if state.replication_factor and state.replication_factor != spec.replication_factor:
        problems.append(
            f"replication factor {state.replication_factor}, expected {spec.replication_factor} "
            f"(FANGXIAN_REPLICATION_FACTOR; change it with kafka-reassign-partitions)"
        )
    wanted = spec.config.get("min.insync.replicas")
    actual = state.config.get("min.insync.replicas")
    if wanted is not None and actual is not None and actual != wanted:
        problems.append(
            f"min.insync.replicas={actual}, expected {wanted} (FANGXIAN_MIN_INSYNC_REPLICAS; "
            f"kafka-configs --alter)"
        )
    if state.partitions and actual is not None and state.fewest_in_sync < int(actual):
        problems.append(
            f"a partition has {state.fewest_in_sync} in-sync replica(s), below "
            f"min.insync.replicas={actual}: its writes are refused (写入被拒绝)"
        )
    return problems


class Doctor:
    """Runs the checks in order; later checks see what earlier ones found."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._env = env  # the edge's FANGXIAN_EDGE_* (None: this process's environment)
        self.checks: list[Check] = []
        self._admin: Any = None
        self._topics: dict[str, Any] = {}

    def run(self) -> list[Check]:
        try:
            for step in (
                self.kafka,
                self.topics,
                self.groups,
                self.clickhouse,
                self.pseudonym_key,
                self.roster_key,
                self.clock,
                self.credentials,
                self.edge,
            ):
                step()
        finally:
            if self._admin is not None:
                self._admin.close()
        return self.checks

    def add(self, name: str, status: str, result: str, fix: str = "") -> None:
        self.checks.append(Check(name, status, result, fix))

    @contextmanager
    def guarded(self, name: str) -> Iterator[None]:
        """A check that raised is a ✗ row with the error path's explanation, not a traceback."""
        try:
            yield
        except Exception as err:
            self.checks.append(_failed(name, err, self.settings))

    # -- 1. Kafka ------------------------------------------------------------------------------

    def kafka(self) -> None:
        from infra.kafka_inspect import broker_info, open_admin

        name = "Kafka 可达 reachable"
        with self.guarded(name):
            self._admin = open_admin(
                self.settings.kafka_bootstrap,
                connect_timeout_s=self.settings.connect_timeout_s,
                client=kafka_client_options(self.settings),
            )
            info = broker_info(self._admin)
            self.add(
                name,
                OK,
                f"{self.settings.kafka_bootstrap}: Kafka {info.version_text} (ApiVersions), "
                f"{info.brokers} broker(s), cluster {info.cluster_id}",
            )

    def _skip_without_kafka(self, name: str) -> bool:
        if self._admin is None:
            self.add(
                name, SKIP, "未检查 not checked", "先修复 Kafka 连接 / fix the Kafka row first"
            )
        return self._admin is None

    # -- 2. topics -----------------------------------------------------------------------------

    def topics(self) -> None:
        from infra.kafka_inspect import describe_topics
        from infra.topics import topic_specs

        if self._skip_without_kafka("主题 topics"):
            return
        specs = topic_specs(self.settings)
        with self.guarded("主题 topics"):
            self._topics = describe_topics(self._admin, [s.name for s in specs])
            for spec in specs:
                self._topic_row(spec, self._topics[spec.name])

    def _topic_row(self, spec: Any, state: Any) -> None:
        name = f"主题 topic {spec.name}"
        policy = spec.config.get("cleanup.policy", "delete")
        expected = f"{spec.partitions} partitions, cleanup.policy={policy}"
        if not state.exists:
            if not state.authorized:
                self.add(name, FAIL, "无权查看 not authorized to describe it", _ACL_FIX)
                return
            self.add(
                name,
                FAIL,
                f"不存在 missing (expected {expected})",
                "运行 run `fangxian topics create`",
            )
            return
        problems = []
        if state.partitions != spec.partitions:
            problems.append(f"{state.partitions} partitions, expected {spec.partitions}")
        actual_policy = state.config.get("cleanup.policy")
        if actual_policy is not None and actual_policy != policy:
            problems.append(f"cleanup.policy={actual_policy}, expected {policy}")
        problems += _replication_problems(spec, state)
        if problems:
            self.add(
                name,
                FAIL,
                "; ".join(problems),
                "分区数须与 FANGXIAN_EVENT_PARTITIONS / FANGXIAN_REFERENCE_PARTITIONS 一致，"
                "清理策略用 kafka-configs --alter 修改 / make the partition settings match "
                "the topic (or recreate it); set cleanup.policy with kafka-configs --alter",
            )
            return
        replicas = (
            f"{state.replication_factor} replicas, "
            f"min.insync.replicas={state.config.get('min.insync.replicas')}"
        )
        done = f"{state.partitions} partitions, cleanup.policy={actual_policy}, {replicas}"
        if state.under_replicated:
            self.add(
                name,
                WARN,
                f"{done}; {state.under_replicated} partition(s) under-replicated "
                f"(副本未同步, fewest in sync {state.fewest_in_sync})",
                "查看哪个 broker 不在线或落后 / a broker is down or behind: start it; it "
                "catches up by itself",
            )
            return
        self.add(name, OK, done)

    # -- 3. consumer groups --------------------------------------------------------------------

    def groups(self) -> None:
        from infra.kafka_inspect import group_states

        if self._skip_without_kafka("消费组 consumer groups"):
            return
        with self.guarded("消费组 consumer groups"):
            for group, state in group_states(self._admin, expected_groups(self.settings)).items():
                name = f"消费组 group {group}"
                if state.error:
                    self.add(name, FAIL, f"无权查看 {state.error}", _ACL_FIX)
                elif not state.exists:
                    self.add(
                        name,
                        WARN,
                        "尚未运行 has not run yet (no committed offsets)",
                        "启动 start `fangxian worker`",
                    )
                else:
                    worst = max(state.lag_by_topic.items(), key=lambda kv: kv[1], default=None)
                    where = f", most on {worst[0]} ({worst[1]:,})" if worst and worst[1] else ""
                    result = (
                        f"{state.state}, {state.members} member(s), lag 积压 {state.lag:,} "
                        f"over {state.partitions} partitions{where}"
                    )
                    idle = state.members == 0 and state.lag > 0
                    self.add(
                        name,
                        WARN if idle else OK,
                        result,
                        "无消费者在处理积压 nobody is consuming: start `fangxian worker`"
                        if idle
                        else "",
                    )

    # -- 4, 5. ClickHouse ----------------------------------------------------------------------

    def clickhouse(self) -> None:
        from sinks import clickhouse_options, open_writer
        from sinks.errors import SinkError
        from sinks.migrate import pending_migrations

        name = "ClickHouse 可达 reachable"
        url = masked_url(self.settings.clickhouse_url)
        writer = None
        with self.guarded(name):
            writer = open_writer(
                self.settings.clickhouse_url,
                connect_timeout_s=self.settings.connect_timeout_s,
                **clickhouse_options(self.settings),
            )
            version = ".".join(str(v) for v in writer.server_version())
            self.add(name, OK, f"{url}: ClickHouse {version}")
        migrations = "数据库迁移 migrations"
        if writer is None or self.checks[-1].status != OK:
            self.add(
                migrations, SKIP, "未检查 not checked", "先修复 ClickHouse 连接 / fix it first"
            )
            if writer is not None:
                writer.close()
            return
        try:
            with self.guarded(migrations):
                try:
                    pending = pending_migrations(writer)
                except SinkError as err:
                    if err.code != 81:  # UNKNOWN_DATABASE: nothing applied yet
                        raise
                    from sinks.migrate import load_migrations

                    pending = load_migrations()
                if pending:
                    self.add(
                        migrations,
                        FAIL,
                        f"{len(pending)} 未执行 pending in {writer.database}: "
                        + ", ".join(m.name for m in pending),
                        "运行 run `fangxian db migrate`",
                    )
                else:
                    self.add(migrations, OK, f"all applied in {writer.database}")
        finally:
            writer.close()

    # -- 6. the pseudonym key ------------------------------------------------------------------

    def pseudonym_key(self) -> None:
        name = "假名化密钥 pseudonym key"
        key = self.settings.pseudonym_key
        fix = "从密钥库设置 set FANGXIAN_PSEUDONYM_KEY from your secret store (never in the repo)"
        if not key:
            self.add(name, FAIL, "未设置 FANGXIAN_PSEUDONYM_KEY is not set", fix)
        elif len(key) < MIN_KEY_CHARS:
            self.add(name, WARN, f"set, but only {len(key)} characters", fix)
        else:
            self.add(name, OK, f"set ({len(key)} characters)")

    def roster_key(self) -> None:
        name = "值班联系方式密钥 roster key"
        if self.settings.roster_key:
            self.add(name, OK, "set")
        else:
            self.add(
                name,
                WARN,
                "未设置 FANGXIAN_ROSTER_KEY is not set (needed by `fangxian dispatch` and "
                "`fangxian load staff`)",
                "从密钥库设置 set FANGXIAN_ROSTER_KEY from your secret store",
            )

    # -- 7. clocks -----------------------------------------------------------------------------

    def clock(self) -> None:
        from infra.kafka_inspect import clock_skew

        name = "时钟 clock vs broker"
        if self._skip_without_kafka(name):
            return
        topic = self.settings.app_id + CLOCK_TOPIC_SUFFIX
        try:
            reading = clock_skew(
                self._admin,
                self.settings.kafka_bootstrap,
                topic,
                connect_timeout_s=self.settings.connect_timeout_s,
                client=kafka_client_options(self.settings),
            )
        except Exception as err:
            self.add(
                name,
                WARN,
                f"无法测量 could not measure ({type(err).__name__}: {err})"[:200],
                f"允许创建并写入主题 {topic} / allow creating and writing {topic}",
            )
            return
        result = (
            f"broker − this machine = {reading.skew_s:+.3f} s (± {reading.uncertainty_s:.3f} s)"
        )
        if abs(reading.skew_s) - reading.uncertainty_s > MAX_CLOCK_SKEW_S:
            self.add(
                name,
                FAIL,
                result,
                f"两台机器用 NTP 同步时钟（偏差须小于 {MAX_CLOCK_SKEW_S:g} 秒）/ sync both clocks "
                f"with NTP (chrony, systemd-timesyncd); skew must be under {MAX_CLOCK_SKEW_S:g} s",
            )
        else:
            self.add(name, OK, result)

    # -- 8. credentials and ACLs ---------------------------------------------------------------

    def credentials(self) -> None:
        name = "凭据与 ACL credentials / ACLs"
        protocol = self.settings.kafka_security_protocol.upper()
        if self._admin is None:
            self._skip_without_kafka(name)
            return
        if not protocol.startswith("SASL"):
            self.add(
                name,
                WARN,
                f"{protocol}: 未配置认证 no authentication configured",
                "仅限本机回环；生产环境用 SASL（docs/deploy.md）/ loopback only; production "
                "uses SASL: set FANGXIAN_KAFKA_SECURITY_PROTOCOL and the credentials",
            )
            return
        user = self.settings.kafka_username
        denied = [n for n, state in self._topics.items() if not state.authorized]
        if denied:
            self.add(
                name,
                FAIL,
                f"{user} 无权查看 may not describe {len(denied)} topic(s): " + ", ".join(denied),
                _ACL_FIX,
            )
        else:
            self.add(name, OK, f"{protocol} as {user}: can describe all {len(self._topics)} topics")

    # -- 9. the gate edge ----------------------------------------------------------------------

    def edge(self) -> None:
        from fangxian.edge.health import OUTBOX_STALE_S, edge_url, outbox_depth, probe_health
        from fangxian.edge.register import Register, RegisterError
        from fangxian.edge.service import EdgeConfig
        from fangxian.worker import EDGE_REGISTER_ENV, edge_configured

        if not edge_configured(self._env):
            self.add(
                "边缘网关 gate edge",
                SKIP,
                f"此处未配置 not configured here ({EDGE_REGISTER_ENV} is not set)",
                f"设备接入的机器上设置 {EDGE_REGISTER_ENV} / set it where gate devices connect "
                "(docs/edge.md)",
            )
            return
        config = EdgeConfig.from_env(self._env)
        name = "边缘设备登记 edge register"
        try:
            register = Register.from_file(config.register_path, config.register_key)
        except RegisterError as err:
            self.add(
                name,
                FAIL,
                f"{config.register_path}: {err.message_zh} / {err.message_en}",
                "运行 run `fangxian load devices FILE.csv`；核对 check FANGXIAN_EDGE_REGISTER_KEY",
            )
        else:
            families = sorted({e.vendor for e in register.entries.values()})
            self.add(
                name,
                OK,
                f"{config.register_path}: {len(register)} devices ({', '.join(families) or '-'})",
            )
        name = "边缘网关可达 edge reachable"
        url = edge_url(config)
        try:
            health = probe_health(url, timeout_s=self.settings.connect_timeout_s)
        except (OSError, ValueError) as err:
            self.add(
                name,
                WARN,
                f"{url} 无应答 not answering ({type(err).__name__})",
                "启动 start `fangxian worker` (role edge) 或 or `fangxian edge`; "
                "核对 check FANGXIAN_EDGE_HOST / FANGXIAN_EDGE_PORT",
            )
        else:
            if health.get("kafka"):
                # the flag says the producer is up; whether records get through is the
                # outbox row's to say (a short outage does not clear it)
                self.add(name, OK, f"{url}: answering 有应答, its Kafka producer is up")
            else:
                self.add(
                    name,
                    WARN,
                    f"{url}: answering, 未连上 Kafka not connected to Kafka (devices get "
                    "fallback answers; the outbox holds their events)",
                    "检查边缘网关到 Kafka 的网络、凭据和 ACL（edge 用户）/ check the edge's "
                    "route, credentials and ACLs (principal `edge`) to Kafka",
                )
        name = "边缘发件箱 edge outbox"
        try:
            found = outbox_depth(config.outbox_path)
        except Exception as err:  # sqlite3.Error, a file that is not an outbox
            self.add(name, FAIL, f"{config.outbox_path}: {type(err).__name__}: {err}"[:200])
            return
        if found is None:
            self.add(
                name,
                WARN,
                f"尚无 none yet at {config.outbox_path} (the edge has not run on this machine)",
                "核对 check FANGXIAN_EDGE_OUTBOX",
            )
            return
        depth, age = found
        result = f"{depth} 条待发送 not yet in Kafka" + (f", oldest {age:.0f} s" if depth else "")
        if depth and age > OUTBOX_STALE_S:
            self.add(
                name,
                WARN,
                result,
                "发件箱未排空：边缘网关连不上 Kafka？/ not draining: can the edge reach Kafka "
                "(its log, the row above)?",
            )
        else:
            self.add(name, OK, result)


_ACL_FIX = (
    "为该用户授权 grant the principal its ACLs: `fangxian acl apply` (or check "
    "FANGXIAN_KAFKA_USERNAME)"
)


def render_table(checks: list[Check], stream: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    terminal = bool(getattr(stream, "isatty", lambda: False)())
    console = Console(file=stream, width=None if terminal else 200, no_color=not terminal)
    table = Table(title="fangxian doctor 部署自检", show_lines=False, expand=False)
    table.add_column("")
    table.add_column("检查 check", no_wrap=True)
    table.add_column("结果 result")
    table.add_column("修复 fix")
    styles = {OK: "green", FAIL: "red", WARN: "yellow", SKIP: "dim"}
    for check in checks:
        table.add_row(
            MARKS[check.status],
            check.name,
            check.result,
            check.fix,
            style=styles[check.status],
        )
    console.print(table)
    failed = sum(c.status == FAIL for c in checks)
    if failed:
        console.print(f"✗ {failed} 项未通过 check(s) failed", markup=False, highlight=False)
    else:
        console.print(
            "✔ 全部所需项已就绪 everything needed is there", markup=False, highlight=False
        )


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    checks = Doctor(settings).run()
    if args.format == "json":
        print(json.dumps([asdict(c) for c in checks], ensure_ascii=False, indent=2))
    else:
        render_table(checks, sys.stdout)
    return PROBLEMS_FOUND if any(c.status == FAIL for c in checks) else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = sub.add_parser(
        "doctor",
        help="部署自检 check Kafka, topics, groups, ClickHouse, migrations, key, clock, ACLs, "
        "the gate edge",
        description="Checks, in order, everything a deployment needs and prints what to fix. "
        "Exit 0 only when every needed check passes.",
    )
    doctor.add_argument("--format", choices=("table", "json"), default="table")
    doctor.set_defaults(func=cmd_doctor)
