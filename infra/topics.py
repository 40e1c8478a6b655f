"""The topics fangxian needs, derived from the settings, and their idempotent creation.

Event and output topics delete old segments (raw events are personal data: they are kept no
longer than needed to replay into ClickHouse); reference topics are compacted (the latest record
per id is the state); dead letters are kept longer so someone can look at them.

Every topic, the decide stage's internal ones included, gets ``Settings.replication_factor``
replicas and ``min.insync.replicas = Settings.min_insync_replicas``: the producers write with
acks=all, so a write is acknowledged once that many replicas have it and a cluster of three with
2 in sync loses no acknowledged record when one broker dies (docs/deploy.md, "Kafka as a
cluster")."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError, for_code

from fangxian.core.settings import SettingError, Settings, Topics
from schemas.topics import CONTROL_TOPICS, REFERENCE_TOPICS, ROSTER_TOPICS, ROUTE_OF

log = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000
EVENT_RETENTION_DAYS = 7
DEAD_LETTER_RETENTION_DAYS = 30
REFERENCE_FIELDS = frozenset((*REFERENCE_TOPICS, *ROSTER_TOPICS))
DEAD_LETTER_FIELD = ROUTE_OF["DeadLetter"].topic
# staff's silences (alert.silences): compacted (the latest record of a silence is the silence)
# *and* deleted after the longest a silence lasts plus a day, so ended ones do not pile up
CONTROL_FIELDS = frozenset(CONTROL_TOPICS)
SILENCE_RETENTION_DAYS = 31  # streams.dispatch.silences.MAX_DURATION_S + 1 day
CREATE_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)

    @property
    def compacted(self) -> bool:
        return self.config.get("cleanup.policy") == "compact"


def _retention_ms(days: int, settings: Settings) -> str:
    """Never keep personal data on a topic longer than the data retention setting."""
    return str(min(days, settings.retention_days) * DAY_MS)


def replication(settings: Settings) -> tuple[int, dict[str, str]]:
    """The replication factor and the ``min.insync.replicas`` config of every topic; a
    ``min_insync_replicas`` above the replication factor (no write could ever succeed) or below
    1 is refused here, before any topic exists."""
    factor, in_sync = settings.replication_factor, settings.min_insync_replicas
    if factor < 1:
        raise SettingError(
            "FANGXIAN_REPLICATION_FACTOR", f"must be >= 1, not {factor}", f"须 >= 1，而非 {factor}"
        )
    if not 1 <= in_sync <= factor:
        raise SettingError(
            "FANGXIAN_MIN_INSYNC_REPLICAS",
            f"must be between 1 and the replication factor ({factor}), not {in_sync}",
            f"须在 1 与副本数（{factor}）之间，而非 {in_sync}",
        )
    return factor, {"min.insync.replicas": str(in_sync)}


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic in ``settings.topics``, in declaration order, with partitions and config."""
    factor, replicated = replication(settings)
    specs = []
    for f in fields(Topics):
        name: str = getattr(settings.topics, f.name)
        if f.name in REFERENCE_FIELDS:
            partitions = settings.reference_partitions
            config = {"cleanup.policy": "compact"}
        elif f.name in CONTROL_FIELDS:
            partitions = settings.reference_partitions
            config = {
                "cleanup.policy": "compact,delete",
                "retention.ms": _retention_ms(SILENCE_RETENTION_DAYS, settings),
            }
        elif f.name == DEAD_LETTER_FIELD:
            partitions = settings.event_partitions
            config = {
                "cleanup.policy": "delete",
                "retention.ms": _retention_ms(DEAD_LETTER_RETENTION_DAYS, settings),
            }
        else:
            partitions = settings.event_partitions
            config = {
                "cleanup.policy": "delete",
                "retention.ms": _retention_ms(EVENT_RETENTION_DAYS, settings),
            }
        specs.append(TopicSpec(name, partitions, factor, {**config, **replicated}))
    return specs + internal_topic_specs(settings)


def internal_topic_specs(settings: Settings) -> list[TopicSpec]:
    """The decide stage's own topics (docs/topology.md): the events repartitioned by community
    and the compacted changelog of the rule state. Both have the event topics' partition count:
    task *p* reads partition *p* of every input and writes its changelog to partition *p*.
    Replicated like the event topics: a changelog partition on one broker would stall its task
    (no restore, no transaction) the moment that broker died."""
    factor, replicated = replication(settings)
    return [
        TopicSpec(
            settings.decide_events_topic,
            settings.event_partitions,
            factor,
            {
                "cleanup.policy": "delete",
                "retention.ms": _retention_ms(EVENT_RETENTION_DAYS, settings),
                **replicated,
            },
        ),
        TopicSpec(
            settings.decide_reroute_topic,
            settings.event_partitions,
            factor,
            {
                "cleanup.policy": "delete",
                "retention.ms": _retention_ms(EVENT_RETENTION_DAYS, settings),
                **replicated,
            },
        ),
        TopicSpec(
            settings.decide_changelog_topic,
            settings.event_partitions,
            factor,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", **replicated},
        ),
    ]


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _request(specs: Sequence[TopicSpec], with_configs: bool) -> dict[str, dict[str, Any]]:
    return {
        spec.name: {
            "num_partitions": spec.partitions,
            "replication_factor": spec.replication_factor,
            **({"configs": dict(spec.config)} if with_configs and spec.config else {}),
        }
        for spec in specs
    }


def cluster_brokers(admin: KafkaAdminClient) -> int:
    """How many brokers the cluster's metadata lists (every broker that registered)."""
    return len(admin.describe_cluster().get("brokers") or [])


def _await_brokers(admin: KafkaAdminClient, needed: int, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while (live := cluster_brokers(admin)) < needed:
        if time.monotonic() >= deadline:
            raise SettingError(
                "FANGXIAN_REPLICATION_FACTOR",
                f"{needed} replicas need {needed} brokers, the cluster has {live} "
                f"(set it and FANGXIAN_MIN_INSYNC_REPLICAS for this cluster)",
                f"副本数 {needed} 需要 {needed} 个 broker，集群只有 {live} 个",
            )
        log.info("waiting for %d brokers (%d so far)", needed, live)
        time.sleep(1.0)


def create_topics(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    *,
    tolerate_existing: bool = True,
    broker_supports_configs: bool = True,
    client: Mapping[str, Any] | None = None,
    connect_timeout_s: float | None = None,
    wait_for_brokers_s: float = 0.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created by this call.

    Existing topics are left as they are (not altered) unless ``tolerate_existing`` is False, in
    which case TopicAlreadyExistsError is raised. Any other broker error is raised. Pass
    ``broker_supports_configs=False`` for brokers (Tansu) that reject per-topic configs.
    ``client``: security options (``fangxian.core.kafka_security.kafka_client_kwargs``).
    ``connect_timeout_s``: how long to wait for the first connection
    (``Settings.connect_timeout_s``; None: the client's 30 s default); an unreachable broker
    raises ``KafkaTimeoutError``.
    ``wait_for_brokers_s``: how long to wait for as many live brokers as the largest replication
    factor asks for (a cluster whose brokers are still starting, as compose starts them); with
    fewer after that, a ``SettingError`` says how many there are.
    """
    if not specs:
        return []
    timeouts = {} if connect_timeout_s is None else {"bootstrap_timeout_ms": _ms(connect_timeout_s)}
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="fangxian-topics",
        **timeouts,
        **dict(client or {}),
    )
    try:
        _await_brokers(admin, max(spec.replication_factor for spec in specs), wait_for_brokers_s)
        response = admin.create_topics(
            _request(specs, broker_supports_configs),
            timeout_ms=CREATE_TIMEOUT_MS,
            raise_errors=False,
        )
        created = []
        for topic in response["topics"]:
            error = for_code(topic["error_code"])
            if topic["error_code"] == 0:
                created.append(topic["name"])
            elif error is TopicAlreadyExistsError and tolerate_existing:
                log.debug("topic %s already exists", topic["name"])
            else:
                raise error(f"{topic['name']}: {topic.get('error_message') or error.__name__}")
        if created:
            admin.wait_for_topics(created, timeout_ms=CREATE_TIMEOUT_MS)
    finally:
        admin.close()
    log.info(
        "topics on %s: %d created, %d already there",
        bootstrap,
        len(created),
        len(specs) - len(created),
    )
    return created
