"""Looking at a running Kafka cluster the way an operator would (``fangxian doctor``): the broker
version, what each topic actually has, a consumer group's lag, and how far the broker's clock is
from this machine's. Read-only apart from the clock probe, which writes one record to a scratch
topic of its own."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, OffsetSpec
from kafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)

# The clock probe's topic: one partition, broker-assigned timestamps, kept one hour.
CLOCK_TOPIC_CONFIG = {
    "message.timestamp.type": "LogAppendTime",
    "retention.ms": str(3600 * 1000),
    "cleanup.policy": "delete",
}


def open_admin(
    bootstrap: str, *, connect_timeout_s: float, client: Mapping[str, Any] | None = None
) -> KafkaAdminClient:
    """An admin client that gives up after ``connect_timeout_s`` (``KafkaTimeoutError``);
    ``client`` adds security options."""
    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="fangxian-doctor",
        bootstrap_timeout_ms=max(1, int(connect_timeout_s * 1000)),
        request_timeout_ms=max(5000, int(connect_timeout_s * 2000)),
        **dict(client or {}),
    )


@dataclass(frozen=True)
class BrokerInfo:
    version: tuple[int, ...]  # inferred by the client from the broker's ApiVersions answer
    brokers: int
    cluster_id: str | None
    controller_id: int | None

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)


def broker_info(admin: KafkaAdminClient) -> BrokerInfo:
    cluster = admin.describe_cluster()
    brokers = cluster.get("brokers") or []
    version: tuple[int, ...] = ()
    if brokers:
        data = admin.get_broker_version_data(brokers[0]["broker_id"])
        version = tuple(data.broker_version or ())
    return BrokerInfo(
        version=version,
        brokers=len(brokers),
        cluster_id=cluster.get("cluster_id"),
        controller_id=cluster.get("controller_id"),
    )


@dataclass(frozen=True)
class TopicState:
    name: str
    exists: bool
    partitions: int = 0
    config: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None  # e.g. TopicAuthorizationFailedError
    replication_factor: int = 0  # the fewest replicas any partition has
    # partitions whose in-sync replicas are fewer than their replicas (a broker away or behind)
    under_replicated: int = 0
    fewest_in_sync: int = 0  # the smallest ISR of any partition

    @property
    def authorized(self) -> bool:
        return self.error != TopicAuthorizationFailedError.__name__


def describe_topics(
    admin: KafkaAdminClient,
    names: Sequence[str],
    config_keys: Sequence[str] = ("cleanup.policy", "min.insync.replicas"),
) -> dict[str, TopicState]:
    """What the cluster has for each of ``names``: partition count, replicas and in-sync
    replicas, and ``config_keys``."""
    states: dict[str, TopicState] = {}
    present: list[str] = []
    for topic in admin.describe_topics(list(names)):
        name = topic["name"]
        code = topic.get("error_code", 0)
        if code == 0:
            present.append(name)
            parts = topic.get("partitions") or []
            replicas = [len(p.get("replica_nodes") or ()) for p in parts]
            in_sync = [len(p.get("isr_nodes") or ()) for p in parts]
            states[name] = TopicState(
                name,
                True,
                len(parts),
                replication_factor=min(replicas, default=0),
                under_replicated=sum(1 for r, i in zip(replicas, in_sync, strict=True) if i < r),
                fewest_in_sync=min(in_sync, default=0),
            )
        else:
            error = for_code(code).__name__
            states[name] = TopicState(name, False, error=error)
    if present:
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, n, list(config_keys)) for n in present
        ]
        described = admin.describe_configs(resources, config_filter="all").get("topic", {})
        for name in present:
            values = {k: str(v.get("value")) for k, v in described.get(name, {}).items()}
            states[name] = replace(states[name], config=values)
    for name in names:
        states.setdefault(name, TopicState(name, False, error="not in metadata"))
    return states


@dataclass(frozen=True)
class GroupState:
    group: str
    exists: bool
    state: str = ""
    members: int = 0
    lag: int = 0  # sum over the partitions the group has committed offsets for
    partitions: int = 0
    lag_by_topic: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None


def group_states(admin: KafkaAdminClient, groups: Sequence[str]) -> dict[str, GroupState]:
    """State, members and lag (end offset − committed offset) of each of ``groups``. A group
    that never committed is ``exists=False``."""
    known = {g["group_id"]: g for g in admin.list_groups()}
    result: dict[str, GroupState] = {}
    for group in groups:
        if group not in known:
            result[group] = GroupState(group, False)
            continue
        try:
            described = admin.describe_groups([group]).get(group, {})
            committed = admin.list_group_offsets(group).get(group, {})
        except (GroupAuthorizationFailedError, TopicAuthorizationFailedError) as err:
            result[group] = GroupState(group, True, error=type(err).__name__)
            continue
        offsets = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
        ends = (
            admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in offsets})
            if offsets
            else {}
        )
        by_topic: dict[str, int] = {}
        for tp, offset in offsets.items():
            end = ends[tp].offset if tp in ends else offset
            by_topic[tp.topic] = by_topic.get(tp.topic, 0) + max(0, end - offset)
        result[group] = GroupState(
            group,
            True,
            state=str(described.get("group_state") or known[group].get("group_state") or ""),
            members=len(described.get("members") or []),
            lag=sum(by_topic.values()),
            partitions=len(offsets),
            lag_by_topic=by_topic,
        )
    return result


@dataclass(frozen=True)
class ClockReading:
    skew_s: float  # broker's clock minus this machine's, at the moment the record was appended
    uncertainty_s: float  # half the round trip: the skew is known to within this


def clock_skew(
    admin: KafkaAdminClient,
    bootstrap: str,
    topic: str,
    *,
    connect_timeout_s: float,
    client: Mapping[str, Any] | None = None,
) -> ClockReading:
    """Produce one record to ``topic`` (created with ``message.timestamp.type=LogAppendTime`` if
    missing) and compare the broker's append time with this machine's clock around the send."""
    with contextlib.suppress(TopicAlreadyExistsError):
        admin.create_topics(
            {topic: {"num_partitions": 1, "replication_factor": -1, "configs": CLOCK_TOPIC_CONFIG}},
            raise_errors=True,
        )
    timeout_ms = max(1, int(connect_timeout_s * 1000))
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="fangxian-doctor-clock",
        acks=1,
        linger_ms=0,
        bootstrap_timeout_ms=timeout_ms,
        max_block_ms=max(timeout_ms, 10_000),
        **dict(client or {}),
    )
    try:
        producer.send(topic, b"clock").get(timeout=10)  # metadata and connection warmed up
        sent_ms = time.time() * 1000
        metadata = producer.send(topic, b"clock").get(timeout=10)
        acked_ms = time.time() * 1000
    finally:
        producer.close(timeout=5)
    if metadata.timestamp is None or metadata.timestamp < 0:
        raise KafkaError(f"{topic}: the broker returned no append time (not LogAppendTime?)")
    middle = (sent_ms + acked_ms) / 2
    return ClockReading((metadata.timestamp - middle) / 1000, (acked_ms - sent_ms) / 2000)
