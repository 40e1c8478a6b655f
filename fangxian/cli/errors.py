"""The CLI's one error path: every foreseeable failure becomes a ``CliError`` of one ``Kind``,
printed as two lines (zh-CN, then English) that name the setting or file to check, and ends the
command with that kind's exit code. ``-v`` adds the traceback. Anything else is a bug: the same
two lines say so (exit 70), and ``-v`` shows where.

The kinds below and their exit codes are the contract; the README's table ("When something is
wrong") repeats them and a unit test keeps the codes distinct.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfoNotFoundError

from fangxian.core.kafka_security import KafkaSecurityError
from fangxian.core.settings import SettingError, Settings


@dataclass(frozen=True)
class Kind:
    name: str
    exit_code: int
    zh: str
    en: str


OK = 0
PROBLEMS_FOUND = 1  # the command ran but reports problems: rows rejected, doctor checks failed
USAGE = 2  # argparse: unknown option, missing argument
SETTING = Kind("setting", 3, "配置缺失或无效", "a setting is missing or invalid")
INPUT = Kind("input", 4, "输入文件无效", "the input file is invalid")
KAFKA_UNREACHABLE = Kind("kafka_unreachable", 5, "无法连接 Kafka", "Kafka is unreachable")
KAFKA_AUTH = Kind(
    "kafka_auth", 6, "Kafka 拒绝认证或访问", "Kafka refused the credentials or access"
)
KAFKA_TOPIC = Kind("kafka_topic", 7, "Kafka 主题不存在", "a Kafka topic is missing")
CLICKHOUSE_UNREACHABLE = Kind(
    "clickhouse_unreachable", 8, "无法连接 ClickHouse", "ClickHouse is unreachable"
)
CLICKHOUSE_AUTH = Kind(
    "clickhouse_auth",
    9,
    "ClickHouse 拒绝认证或访问",
    "ClickHouse refused the credentials or access",
)
CLICKHOUSE_SCHEMA = Kind(
    "clickhouse_schema",
    10,
    "ClickHouse 表或数据库不存在",
    "a ClickHouse table or database is missing",
)
SERVICE_START = Kind("service_start", 11, "内置服务未能启动", "a bundled service did not start")
INTERNAL = Kind("internal", 70, "内部错误（程序缺陷）", "internal error (a bug)")
INTERRUPTED = Kind("interrupted", 130, "已中断", "interrupted")

KINDS: tuple[Kind, ...] = (
    SETTING,
    INPUT,
    KAFKA_UNREACHABLE,
    KAFKA_AUTH,
    KAFKA_TOPIC,
    CLICKHOUSE_UNREACHABLE,
    CLICKHOUSE_AUTH,
    CLICKHOUSE_SCHEMA,
    SERVICE_START,
    INTERNAL,
    INTERRUPTED,
)

# ClickHouse error codes (src/Common/ErrorCodes.cpp) the CLI explains.
CH_AUTH_CODES = frozenset({192, 193, 194, 195, 516})  # unknown user, wrong/required password, ip
CH_ACCESS_CODES = frozenset({164, 497})  # readonly, access denied
CH_SCHEMA_CODES = frozenset({60, 81})  # unknown table, unknown database

KAFKA_SETTING = "FANGXIAN_KAFKA_BOOTSTRAP"
CLICKHOUSE_SETTING = "FANGXIAN_CLICKHOUSE_URL"
KAFKA_CREDENTIALS = (
    "FANGXIAN_KAFKA_SECURITY_PROTOCOL / FANGXIAN_KAFKA_USERNAME / FANGXIAN_KAFKA_PASSWORD"
)


class CliError(Exception):
    """A foreseeable failure, said twice: ``zh`` and ``en`` each name what to check."""

    def __init__(self, kind: Kind, zh: str, en: str) -> None:
        super().__init__(en)
        self.kind = kind
        self.zh = zh
        self.en = en

    @property
    def exit_code(self) -> int:
        return self.kind.exit_code

    def lines(self) -> tuple[str, str]:
        return (f"✗ {self.kind.zh}：{self.zh}", f"  {self.kind.en}: {self.en}")


def setting_error(setting: str, problem_zh: str, problem_en: str) -> CliError:
    return CliError(SETTING, f"请检查 {setting}：{problem_zh}", f"check {setting}: {problem_en}")


def input_error(path: str, problem_zh: str, problem_en: str | None = None) -> CliError:
    return CliError(
        INPUT,
        f"请检查文件 {path}（{problem_zh}）",
        f"check the file {path} ({problem_en or problem_zh})",
    )


def masked_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (it is printed for a person to read)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def tcp_open(bootstrap: str, timeout_s: float) -> bool:
    """True when the first ``host:port`` of ``bootstrap`` accepts a TCP connection."""
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def _kafka_unreachable(settings: Settings, detail: str) -> CliError:
    bootstrap = settings.kafka_bootstrap
    protocol = settings.kafka_security_protocol.upper()
    if tcp_open(bootstrap, min(settings.connect_timeout_s, 2.0)):
        # Something listens there but the Kafka handshake did not complete: wrong credentials,
        # TLS or SASL where the listener expects something else, or not a Kafka port at all.
        return CliError(
            KAFKA_AUTH,
            f"{bootstrap} 有服务监听，但 Kafka 握手未完成（当前协议 {protocol}）；"
            f"请检查 {KAFKA_CREDENTIALS} 和 {KAFKA_SETTING}",
            f"something listens on {bootstrap} but the Kafka handshake did not complete "
            f"(protocol {protocol}); check {KAFKA_CREDENTIALS} and {KAFKA_SETTING}",
        )
    return CliError(
        KAFKA_UNREACHABLE,
        f"{settings.connect_timeout_s:g} 秒内连不上 {bootstrap}；请检查 {KAFKA_SETTING}"
        f"（或 --bootstrap）以及 Kafka 是否已启动",
        f"no broker answered at {bootstrap} within {settings.connect_timeout_s:g} s ({detail}); "
        f"check {KAFKA_SETTING} (or --bootstrap) and that Kafka is running",
    )


def _kafka(err: BaseException, settings: Settings) -> CliError | None:
    from kafka import errors as kafka_errors

    if isinstance(err, kafka_errors.UnknownTopicOrPartitionError):
        topic = str(err.args[0]) if err.args else "?"
        return CliError(
            KAFKA_TOPIC,
            f"{settings.kafka_bootstrap} 上没有主题 {topic}；请运行 fangxian topics create，"
            "或检查 FANGXIAN_TOPIC_* 设置",
            f"{settings.kafka_bootstrap} has no topic {topic}; run `fangxian topics create` "
            "or check the FANGXIAN_TOPIC_* settings",
        )
    if isinstance(
        err, (kafka_errors.AuthorizationError, kafka_errors.SaslAuthenticationFailedError)
    ):
        return CliError(
            KAFKA_AUTH,
            f"{type(err).__name__}；请检查 {KAFKA_CREDENTIALS}，以及该用户的 ACL"
            "（fangxian acl show）",
            f"{err}; check {KAFKA_CREDENTIALS} and the principal's ACLs (`fangxian acl show`)",
        )
    unreachable = (
        kafka_errors.KafkaTimeoutError,
        kafka_errors.KafkaConnectionError,
        *(
            (kafka_errors.NoBrokersAvailable,)
            if hasattr(kafka_errors, "NoBrokersAvailable")
            else ()
        ),
    )
    if isinstance(err, kafka_errors.KafkaTimeoutError) and "metadata" in str(err):
        # the client bootstrapped, then waited in vain for a topic's partitions
        return CliError(
            KAFKA_TOPIC,
            f"{settings.kafka_bootstrap} 未返回主题的分区信息，主题多半不存在；请运行 "
            "fangxian topics create，或检查 FANGXIAN_TOPIC_* 设置",
            f"{settings.kafka_bootstrap} returned no partitions for a topic, which is most "
            "likely missing; run `fangxian topics create` or check the FANGXIAN_TOPIC_* settings",
        )
    if isinstance(err, unreachable):
        return _kafka_unreachable(settings, str(err))
    return None


def _clickhouse(err: BaseException, settings: Settings) -> CliError | None:
    from sinks.errors import SinkError, SinkUnavailable

    if not isinstance(err, SinkError):
        return None
    url = masked_url(settings.clickhouse_url)
    first_line = err.reason.strip().splitlines()[0] if err.reason.strip() else type(err).__name__
    if isinstance(err, SinkUnavailable):
        return CliError(
            CLICKHOUSE_UNREACHABLE,
            f"连不上 {url}；请检查 {CLICKHOUSE_SETTING}（或 --clickhouse）"
            "以及 ClickHouse 是否已启动",
            f"cannot reach {url} ({first_line[:200]}); check {CLICKHOUSE_SETTING} "
            "(or --clickhouse) and that ClickHouse is running",
        )
    if err.code in CH_AUTH_CODES:
        return CliError(
            CLICKHOUSE_AUTH,
            f"{url} 拒绝了用户名或密码；请检查 {CLICKHOUSE_SETTING} 中的用户和密码",
            f"{url} refused the user or password (code {err.code}); check the user and "
            f"password in {CLICKHOUSE_SETTING}",
        )
    if err.code in CH_ACCESS_CODES:
        return CliError(
            CLICKHOUSE_AUTH,
            f"{url} 上该用户无权执行此操作；请检查 {CLICKHOUSE_SETTING} 中的用户",
            f"the user of {url} may not do this (code {err.code}); check the user in "
            f"{CLICKHOUSE_SETTING}",
        )
    if err.code in CH_SCHEMA_CODES:
        return CliError(
            CLICKHOUSE_SCHEMA,
            f"{url} 缺少表或数据库；请先运行 fangxian db migrate（或检查 {CLICKHOUSE_SETTING} "
            "中的数据库名）",
            f"{url}: {first_line[:200]}; run `fangxian db migrate` first (or check the "
            f"database in {CLICKHOUSE_SETTING})",
        )
    return None


def _service(err: BaseException) -> CliError | None:
    """``fangxian run`` / ``bench`` start their own Kafka, ClickHouse or Tansu."""
    from infra.process import ServiceStartError

    if not isinstance(err, ServiceStartError):
        return None
    first = str(err).strip().splitlines()[0] if str(err).strip() else "ServiceStartError"
    return CliError(
        SERVICE_START,
        f"{first[:300]}；请检查 Java 17、make test-deps 安装的组件，以及上面日志的末尾",
        f"{first[:300]}; check Java 17 and what `make test-deps` installs, and the log tail "
        "(run with -v for all of it)",
    )


def classify(err: BaseException, settings: Settings | None) -> CliError:
    """The ``CliError`` for ``err`` (walking its ``raise … from`` chain); ``INTERNAL`` for an
    exception nobody foresaw, or when explaining it failed too."""
    try:
        return _classify(err, settings or Settings())
    except Exception:  # the error path must not end in a traceback of its own
        return _internal(err)


def _internal(err: BaseException) -> CliError:
    return CliError(
        INTERNAL,
        f"{type(err).__name__}: {err}；请加 -v 重新运行以查看详细信息，并报告此问题",
        f"{type(err).__name__}: {err}; run again with -v for the traceback and report it",
    )


def _classify(err: BaseException, settings: Settings) -> CliError:
    if isinstance(err, KeyboardInterrupt):
        return CliError(INTERRUPTED, "用户中断（Ctrl-C）", "stopped by the user (Ctrl-C)")
    for cause in _chain(err):
        if isinstance(cause, CliError):
            return cause
        if isinstance(cause, SettingError):
            return setting_error(cause.setting, cause.problem_zh, cause.problem)
        if isinstance(cause, KafkaSecurityError):  # its message names the variables
            return CliError(SETTING, f"Kafka 安全设置无效：{cause}", f"{cause}")
        found = _kafka(cause, settings) or _clickhouse(cause, settings) or _service(cause)
        if found is not None:
            return found
        if isinstance(cause, (FileNotFoundError, IsADirectoryError, PermissionError)) and (
            cause.filename
        ):
            reason = cause.strerror or type(cause).__name__
            return input_error(str(cause.filename), reason, reason)
        if isinstance(cause, ZoneInfoNotFoundError):
            return setting_error(
                "FANGXIAN_DEFAULT_TIMEZONE",
                f"未知时区（或检查 --timezone）：{cause}",
                f"unknown time zone (or check --timezone): {cause}",
            )
        if isinstance(cause, json.JSONDecodeError):
            return CliError(INPUT, f"JSON 无效：{cause}", f"invalid JSON: {cause}")
    return _internal(err)
