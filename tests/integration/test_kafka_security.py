"""Least privilege on the real broker: every principal of infra.acl can do what the table says
and nothing else (SASL/SCRAM-SHA-512, StandardAuthorizer, no ACL = denied).

Each denial has its control: the same client, same credentials, doing what the table does
allow, succeeds — so a denial is the ACL's doing, not a broken client or a missing topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    GroupAuthorizationFailedError as AioGroupAuthorizationFailed,
)
from aiokafka.errors import KafkaConnectionError as AioKafkaConnectionError
from aiokafka.errors import (
    TopicAuthorizationFailedError as AioTopicAuthorizationFailed,
)
from aiokafka.errors import (
    TransactionalIdAuthorizationFailed as AioTransactionalIdAuthorizationFailed,
)
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourceType,
)
from kafka.errors import KafkaError, TopicAuthorizationFailedError

from fangxian.console.actions import ActionWriter
from fangxian.console.live import LiveFeed, LiveState
from fangxian.console.roster import StaffDirectory
from fangxian.core.kafka_security import KafkaSecurityError, kafka_client_kwargs
from fangxian.core.settings import Settings
from infra.acl import Principals, acl_table, apply_acls, describe_acls
from infra.kafka_broker import KafkaBroker
from infra.topics import TopicSpec, create_topics
from tests.cli_run import run_cli, settings_env

ROLES = Principals()
SEND_TIMEOUT_S = 30


def as_role(broker: KafkaBroker, settings: Settings, role: str, *, tls: bool = False) -> Settings:
    return broker.settings_for(getattr(ROLES, role), settings, tls=tls)


def produce(settings: Settings, topic: str, value: bytes = b"x") -> Any:
    """Send one record as ``settings``' principal and wait for the broker's answer."""
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        max_block_ms=10_000,
        # idempotence needs WRITE on some topic; without it the topic ACL alone decides
        enable_idempotence=False,
        **kafka_client_kwargs(settings),
    )
    try:
        return producer.send(topic, value, key=b"k").get(timeout=SEND_TIMEOUT_S)
    finally:
        producer.close(timeout=5)


def visible_topics(settings: Settings) -> set[str]:
    """The topics the broker's metadata shows ``settings``' principal: only those it may
    DESCRIBE (which READ and WRITE imply)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings)
    )
    try:
        return set(consumer.topics())
    finally:
        consumer.close()


def partitions_of(admin: Settings, topic: str) -> list[int]:
    consumer = KafkaConsumer(bootstrap_servers=admin.kafka_bootstrap, **kafka_client_kwargs(admin))
    try:
        return sorted(consumer.partitions_for_topic(topic) or [])
    finally:
        consumer.close()


def read_all(
    settings: Settings,
    topic: str,
    partitions: list[int],
    *,
    group: str | None = None,
    polls: int = 10,
) -> list[bytes]:
    """Every record of ``topic`` as ``settings``' principal, with aiokafka (the client of the
    decide and sink stages); with ``group``, the offsets are committed in it."""

    async def consume() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
            **_aio(settings),
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, p) for p in partitions])
            values: list[bytes] = []
            for _ in range(polls):
                batch = await consumer.getmany(timeout_ms=1_000)
                values.extend(r.value for records in batch.values() for r in records if r.value)
                if values:
                    break
            if group is not None:
                await consumer.commit()
            return values
        finally:
            await consumer.stop()

    return asyncio.run(consume())


def fetch_as(settings: Settings, topic: str, partitions: list[int]) -> None:
    """One fetch from the start of ``topic`` with kafka-python (raises what the broker says)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kafka_client_kwargs(settings),
    )
    try:
        consumer.assign([KafkaTopicPartition(topic, p) for p in partitions])
        for _ in range(5):
            consumer.poll(timeout_ms=1_000)
    finally:
        consumer.close()


@pytest.mark.parametrize(
    ("topic_field", "allowed"),
    [
        pytest.param("gate_scans", True, id="device can write gate.scans"),
        pytest.param("temperature_readings", True, id="device can write temperature.readings"),
        pytest.param("health_reports", True, id="device can write health.reports"),
        pytest.param("residents", False, id="device cannot write reference.residents"),
        pytest.param("passes", False, id="device cannot revoke or forge a visitor pass"),
        pytest.param("alerts", False, id="device cannot forge an alert"),
        pytest.param("gate_decisions", False, id="device cannot forge a gate decision"),
    ],
)
def test_device_writes_only_its_event_topics(
    secure_kafka: KafkaBroker, secure_topics: Settings, topic_field: str, allowed: bool
) -> None:
    device = as_role(secure_kafka, secure_topics, "device")
    topic = getattr(device.topics, topic_field)
    if allowed:
        assert produce(device, topic).topic == topic
    else:
        with pytest.raises(TopicAuthorizationFailedError):
            produce(device, topic)


@pytest.mark.parametrize(
    "topic_field",
    [
        pytest.param("gate_decisions", id="device cannot read or even see gate.decisions"),
        pytest.param("alerts", id="device cannot read or see alerts"),
        pytest.param("residents", id="device cannot read or see the resident register"),
        pytest.param("dead_letters", id="device cannot read or see dead letters"),
    ],
)
def test_device_cannot_see_what_it_may_not_read(
    secure_kafka: KafkaBroker, secure_topics: Settings, topic_field: str
) -> None:
    """No DESCRIBE: the broker's metadata hides the topic, so no client finds a leader to
    fetch from; the same read as the super user gets the record."""
    topic = getattr(secure_topics.topics, topic_field)
    produce(secure_topics, topic, b"secret")  # as the super user: the topic has data
    partitions = partitions_of(secure_topics, topic)
    device = as_role(secure_kafka, secure_topics, "device")
    assert topic not in visible_topics(device)
    assert topic in visible_topics(secure_topics)
    assert read_all(device, topic, partitions, polls=3) == []
    assert read_all(secure_topics, topic, partitions) == [b"secret"]


def test_device_cannot_read_back_the_topic_it_writes(
    secure_kafka: KafkaBroker, secure_topics: Settings
) -> None:
    """gate.scans is visible to a device (WRITE implies DESCRIBE) but a fetch is refused."""
    topic = secure_topics.topics.gate_scans
    device = as_role(secure_kafka, secure_topics, "device")
    produce(device, topic, b"scan")
    partitions = partitions_of(secure_topics, topic)
    assert topic in visible_topics(device)
    with pytest.raises(TopicAuthorizationFailedError):
        fetch_as(device, topic, partitions)
    fetch_as(secure_topics, topic, partitions)  # control: the super user's fetch passes


def test_without_the_acl_table_nothing_is_allowed(secure_kafka: KafkaBroker) -> None:
    """allow.everyone.if.no.acl.found=false: a device on topics no ACL names is refused, and
    the same write passes once the table for those topics is applied."""
    assert secure_kafka.security is not None
    name = f"noacl{uuid.uuid4().hex[:8]}"
    admin = secure_kafka.settings_for(secure_kafka.security.super_user)
    settings = admin.replace(app_id=f"fangxian-{name}", topics=admin.topics.with_prefix(f"{name}."))
    create_topics(
        settings.kafka_bootstrap,
        [TopicSpec(settings.topics.gate_scans, 1, 1)],
        client=secure_kafka.admin_kwargs(),
    )
    device = as_role(secure_kafka, settings, "device")
    with pytest.raises(TopicAuthorizationFailedError):
        produce(device, settings.topics.gate_scans)
    apply_acls(settings, acl_table(settings))
    assert produce(device, settings.topics.gate_scans).offset >= 0


def _start_producer(settings: Settings) -> None:
    async def start() -> None:
        producer = AIOKafkaProducer(request_timeout_ms=10_000, **_aio(settings))
        try:
            await producer.start()
        finally:
            await producer.stop()

    asyncio.run(start())


@pytest.mark.parametrize(
    ("user", "password", "refused"),
    [
        pytest.param("device", None, False, id="control: the right password is accepted"),
        pytest.param("device", "wrong-password", True, id="a wrong password is refused"),
        pytest.param("device", "", True, id="a blank password is refused"),
        pytest.param("admin", "guess", True, id="a guessed super user password is refused"),
        pytest.param("intruder", "guess", True, id="an unknown user is refused"),
    ],
)
def test_authentication(
    secure_kafka: KafkaBroker,
    secure_topics: Settings,
    caplog: pytest.LogCaptureFixture,
    user: str,
    password: str | None,
    refused: bool,
) -> None:
    settings = as_role(secure_kafka, secure_topics, "device").replace(kafka_username=user)
    if password is not None:
        # an empty password is refused by the helper before any connection: bypass it
        settings = settings.replace(kafka_password=password or " ")
    if not refused:
        _start_producer(settings)
        return
    # an in-process CLI run earlier in the session quiets aiokafka's logger: hear it here
    caplog.set_level(logging.ERROR, logger="aiokafka")
    with pytest.raises(AioKafkaConnectionError):
        _start_producer(settings)
    assert "invalid credentials" in caplog.text


def test_sasl_needs_credentials_in_settings(secure_topics: Settings) -> None:
    with pytest.raises(KafkaSecurityError):
        kafka_client_kwargs(secure_topics.replace(kafka_password=""))


def test_plaintext_client_cannot_talk_to_the_sasl_listener(
    secure_kafka: KafkaBroker, secure_topics: Settings
) -> None:
    with pytest.raises(KafkaError):
        KafkaAdminClient(
            bootstrap_servers=secure_topics.kafka_bootstrap,
            request_timeout_ms=3_000,
            api_version_auto_timeout_ms=3_000,
        ).close()


def test_device_over_tls_with_the_run_time_ca(
    secure_kafka: KafkaBroker, secure_topics: Settings
) -> None:
    device = as_role(secure_kafka, secure_topics, "device", tls=True)
    assert device.kafka_security_protocol == "SASL_SSL"
    assert produce(device, device.topics.gate_scans, b"over tls").topic == (
        device.topics.gate_scans
    )
    with pytest.raises(TopicAuthorizationFailedError):
        produce(device, device.topics.alerts)


def _internal_topics(settings: Settings) -> tuple[str, str]:
    table = {g.name for grants in acl_table(settings).grants.values() for g in grants}
    events = f"{settings.app_id}-decide-events"
    changelog = f"{settings.app_id}-decide-changelog"
    assert {events, changelog} <= table
    return events, changelog


def _ensure_internal_topics(broker: KafkaBroker, settings: Settings) -> tuple[str, str]:
    events, changelog = _internal_topics(settings)
    create_topics(
        settings.kafka_bootstrap,
        [TopicSpec(events, 1, 1), TopicSpec(changelog, 1, 1, {"cleanup.policy": "compact"})],
        client=broker.admin_kwargs(),
    )
    return events, changelog


def _aio(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
        **kafka_client_kwargs(settings, "aiokafka"),
    }


async def _decide_round(
    decide: Settings, events_in: str, outputs: list[str], transactional_id: str, group: str
) -> list[bytes]:
    """What the decide stage does per batch, under its own principal: read an event topic in
    its group, then one transaction with outputs and the input offsets."""
    consumer = AIOKafkaConsumer(
        events_in,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        **_aio(decide),
    )
    producer = AIOKafkaProducer(transactional_id=transactional_id, acks="all", **_aio(decide))
    await consumer.start()
    try:
        await producer.start()
        try:
            batch = await consumer.getmany(timeout_ms=15_000)
            values = [r.value for records in batch.values() for r in records]
            offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
            async with producer.transaction():
                for topic in outputs:
                    await producer.send_and_wait(topic, b"decided", key=b"k")
                await producer.send_offsets_to_transaction(offsets, group)
            return [v for v in values if v is not None]
        finally:
            await producer.stop()
    finally:
        await consumer.stop()


def test_decide_principal_does_what_the_table_says(
    secure_kafka: KafkaBroker, secure_topics: Settings
) -> None:
    events, changelog = _ensure_internal_topics(secure_kafka, secure_topics)
    device = as_role(secure_kafka, secure_topics, "device")
    decide = as_role(secure_kafka, secure_topics, "decide")
    t = decide.topics
    produce(device, t.gate_scans, b"scan")
    outputs = [t.gate_decisions, t.alerts, t.dead_letters, events, changelog]
    got = asyncio.run(
        _decide_round(
            decide, t.gate_scans, outputs, f"{decide.app_id}-decide-0", f"{decide.app_id}-decide"
        )
    )
    assert got == [b"scan"]
    # the decide stage reads its internal topics and the reference data (no group)
    produce(secure_topics, t.residents, b"resident")
    assert read_all(decide, t.residents, partitions_of(secure_topics, t.residents)) == [b"resident"]
    assert read_all(decide, changelog, partitions_of(secure_topics, changelog)) == [b"decided"]
    # what it wrote is there for the sink, committed
    sink = as_role(secure_kafka, secure_topics, "sink")
    decisions = partitions_of(secure_topics, t.gate_decisions)
    assert read_all(sink, t.gate_decisions, decisions, group=f"{decide.app_id}-sink") == [
        b"decided"
    ]


DecideCase = Callable[[Settings, str, str], Any]


@pytest.mark.parametrize(
    ("case", "error"),
    [
        pytest.param(
            lambda d, events, _: _decide_round(
                d, d.topics.gate_scans, [d.topics.gate_decisions], "someone-else-0", events
            ),
            (AioTransactionalIdAuthorizationFailed, AioGroupAuthorizationFailed),
            id="decide cannot use a transactional id outside its prefix",
        ),
        pytest.param(
            lambda d, _, group: _decide_round(
                d, d.topics.gate_scans, [d.topics.residents], f"{d.app_id}-decide-1", group
            ),
            (AioTopicAuthorizationFailed,),
            id="decide cannot write reference.residents",
        ),
        pytest.param(
            lambda d, _, __: _decide_round(
                d,
                d.topics.gate_scans,
                [d.topics.gate_decisions],
                f"{d.app_id}-decide-2",
                "another-group",
            ),
            (AioGroupAuthorizationFailed,),
            id="decide cannot commit in another consumer group",
        ),
    ],
)
def test_decide_principal_is_refused_outside_the_table(
    secure_kafka: KafkaBroker,
    secure_topics: Settings,
    case: DecideCase,
    error: tuple[type[Exception], ...],
) -> None:
    _ensure_internal_topics(secure_kafka, secure_topics)
    produce(as_role(secure_kafka, secure_topics, "device"), secure_topics.topics.gate_scans)
    decide = as_role(secure_kafka, secure_topics, "decide")
    with pytest.raises(error):
        asyncio.run(case(decide, f"{decide.app_id}-decide", f"{decide.app_id}-decide"))


@pytest.mark.parametrize(
    ("role", "topic_field"),
    [
        pytest.param("sink", "gate_decisions", id="sink writes nothing: not gate.decisions"),
        pytest.param("sink", "alerts", id="sink writes nothing: not alerts"),
        pytest.param("loader", "gate_scans", id="loader cannot write events"),
        pytest.param("loader", "alerts", id="loader cannot write alerts"),
        pytest.param("reporter", "residents", id="reporter cannot write reference data"),
    ],
)
def test_other_principals_cannot_write_outside_the_table(
    secure_kafka: KafkaBroker, secure_topics: Settings, role: str, topic_field: str
) -> None:
    settings = as_role(secure_kafka, secure_topics, role)
    with pytest.raises(TopicAuthorizationFailedError):
        produce(settings, getattr(settings.topics, topic_field))


def test_loader_writes_reference_data(secure_kafka: KafkaBroker, secure_topics: Settings) -> None:
    loader = as_role(secure_kafka, secure_topics, "loader")
    assert produce(loader, loader.topics.residents).topic == loader.topics.residents
    with pytest.raises(TopicAuthorizationFailedError):
        fetch_as(
            loader, loader.topics.residents, partitions_of(secure_topics, loader.topics.residents)
        )


def test_acl_apply_is_idempotent_and_sets_credentials(
    secure_kafka: KafkaBroker, secure_topics: Settings
) -> None:
    table = acl_table(secure_topics)
    before = {repr(a) for a in describe_acls(secure_topics)}
    result = apply_acls(secure_topics, table, passwords={"reporter": "new-reporter-pw"})
    after = {repr(a) for a in describe_acls(secure_topics)}
    assert before == after, "applying the same table twice adds nothing"
    assert result.users == [ROLES.reporter]
    reporter = secure_topics.replace(
        kafka_username=ROLES.reporter, kafka_password="new-reporter-pw"
    )
    assert produce(reporter, reporter.topics.reports_daily).offset >= 0
    # restore the session password so other tests' reporter logins still work
    assert secure_kafka.security is not None
    apply_acls(
        secure_topics, table, passwords={"reporter": secure_kafka.security.users[ROLES.reporter]}
    )


def test_aiokafka_consumer_of_the_sink_gets_its_topics(
    secure_kafka: KafkaBroker, secure_topics: Settings
) -> None:
    sink = as_role(secure_kafka, secure_topics, "sink")
    produce(secure_topics, sink.topics.alerts, b"alert")

    async def consume() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            group_id=f"{sink.app_id}-sink",
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            **_aio(sink),
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition(sink.topics.alerts, p) for p in range(3)])
            batch = await consumer.getmany(timeout_ms=10_000)
            return [r.value for records in batch.values() for r in records if r.value]
        finally:
            await consumer.stop()

    assert asyncio.run(consume()) == [b"alert"]


def test_the_loader_cli_producer_logs_in_with_its_settings(
    secure_kafka: KafkaBroker, secure_topics: Settings
) -> None:
    """fangxian load's RecordProducer takes its credentials from Settings (the helper)."""
    from fangxian.ingest.produce import RecordProducer
    from schemas import contract

    loader = as_role(secure_kafka, secure_topics, "loader")
    producer = RecordProducer(loader, acks="all")
    try:
        producer.send("Resident", contract.examples("Resident")[0])
    finally:
        producer.close()
    topic = secure_topics.topics.residents
    assert len(read_all(secure_topics, topic, partitions_of(secure_topics, topic))) == 1


async def _console_round(console: Settings, alert_id: str) -> tuple[LiveState, set[str]]:
    """What ``fangxian console`` does on Kafka, with its own clients under ``console``'s
    principal: follow the live topics and the staff directory (no group), then acknowledge an
    alert (a request to alert.actions) and see its own request come back in the feed."""
    stop = asyncio.Event()
    feed = LiveFeed(console)
    directory = StaffDirectory()
    actions = ActionWriter(console)
    tasks = [
        asyncio.create_task(feed.run(stop)),
        asyncio.create_task(directory.follow(console, stop)),
    ]
    try:
        for ready in (feed.ready, directory.loaded):
            waiter = asyncio.create_task(ready.wait())
            done, _ = await asyncio.wait(
                [waiter, *tasks], timeout=60, return_when=asyncio.FIRST_COMPLETED
            )
            if waiter not in done:
                waiter.cancel()
                for task in done:
                    task.result()  # a client the broker refused says why
                raise AssertionError("the console's consumers never got ready")
        await actions.start()
        try:
            view = await _until(lambda: feed.state.alerts.get(alert_id))
            await actions.request("ack", alert_id, "st-1", view.partition or 0)
        finally:
            await actions.stop()
        await _until(lambda: feed.state.counts["actions"] >= 1)
        return feed.state, set(directory.staff)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _until(probe: Callable[[], Any], timeout_s: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (found := probe()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the console")
        await asyncio.sleep(0.2)
    return found


def test_the_console_runs_under_its_own_principal(
    secure_kafka: KafkaBroker, secure_topics: Settings
) -> None:
    from fangxian.ingest.produce import RecordProducer
    from schemas import contract

    alert = contract.examples("Alert")[0]
    staff = contract.examples("StaffMember")[0]
    admin = RecordProducer(secure_topics, acks="all")
    try:
        admin.send("Alert", alert)
        admin.send("StaffMember", staff)
    finally:
        admin.close()
    console = as_role(secure_kafka, secure_topics, "console")
    assert console.kafka_username == ROLES.console
    state, staff_ids = asyncio.run(_console_round(console, alert["alert_id"]))
    assert alert["alert_id"] in state.alerts
    assert state.counts["actions"] == 1, "its own ack request, read back from alert.actions"
    assert staff_ids == {staff["staff_id"]}


@pytest.mark.parametrize(
    ("topic_field", "control"),
    [
        pytest.param("alerts", "decide", id="console cannot forge an alert"),
        pytest.param("gate_decisions", "decide", id="console cannot forge a gate decision"),
        pytest.param("residents", "loader", id="console cannot write reference.residents"),
        pytest.param("staff", "loader", id="console cannot change the staff list it reads"),
    ],
)
def test_console_cannot_write_outside_alert_actions(
    secure_kafka: KafkaBroker, secure_topics: Settings, topic_field: str, control: str
) -> None:
    topic = getattr(secure_topics.topics, topic_field)
    with pytest.raises(TopicAuthorizationFailedError):
        produce(as_role(secure_kafka, secure_topics, "console"), topic)
    # control: the principal the table lets write there does
    assert produce(as_role(secure_kafka, secure_topics, control), topic).topic == topic


def test_console_cannot_read_the_resident_register(
    secure_kafka: KafkaBroker, secure_topics: Settings
) -> None:
    topic = secure_topics.topics.residents
    produce(secure_topics, topic, b"resident")
    partitions = partitions_of(secure_topics, topic)
    console = as_role(secure_kafka, secure_topics, "console")
    assert topic not in visible_topics(console)
    assert read_all(console, topic, partitions, polls=3) == []
    # control: decide, which the table lets read it, gets the record with the same client
    assert read_all(as_role(secure_kafka, secure_topics, "decide"), topic, partitions) == [
        b"resident"
    ]
    # and the console does read the topics it is granted
    produce(secure_topics, console.topics.alerts, b"alert")
    alerts = partitions_of(secure_topics, console.topics.alerts)
    assert read_all(console, console.topics.alerts, alerts) == [b"alert"]


def _grant(principal: str, topic: str, op: ACLOperation) -> ACL:
    pattern = ResourcePattern(ResourceType.TOPIC, topic, ACLResourcePatternType.LITERAL)
    return ACL(principal, "*", op, ACLPermissionType.ALLOW, pattern)


def _produce_when_allowed(settings: Settings, topic: str, wait_s: float = 15) -> None:
    """Produce once the broker's authorizer has an ACL just created (the metadata log)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            produce(settings, topic)
            return
        except TopicAuthorizationFailedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_acl_apply_removes_stale_grants_of_its_principals_only(
    secure_kafka: KafkaBroker, secure_topics: Settings
) -> None:
    """A grant by hand to a principal of the table (console may write alerts) is gone after
    ``fangxian acl apply`` and reported; the same grant to a principal the table does not
    manage is left alone (the control: pruning is not "delete everything not in the table")."""
    alerts = secure_topics.topics.alerts
    stale = _grant(f"User:{ROLES.console}", alerts, ACLOperation.WRITE)
    outsider = _grant(f"User:outsider{uuid.uuid4().hex[:8]}", alerts, ACLOperation.READ)
    console = as_role(secure_kafka, secure_topics, "console")
    env = settings_env(secure_topics)
    admin = KafkaAdminClient(
        bootstrap_servers=secure_topics.kafka_bootstrap, **secure_kafka.admin_kwargs()
    )
    try:
        assert not admin.create_acls([stale, outsider])["failed"]
        _produce_when_allowed(console, alerts)  # the hand-made grant is in effect

        plan = run_cli(["acl", "apply", "--dry-run"], env)
        assert plan.returncode == 0, plan.stderr
        assert "将删除 would remove 1" in plan.stdout
        assert f"  - User:{ROLES.console} topic {alerts} WRITE" in plan.stdout
        assert stale in describe_acls(secure_topics), "a dry run changes nothing"

        done = run_cli(["acl", "apply"], env)
        assert done.returncode == 0, done.stderr
        assert "新增 added 0, 删除 removed 1" in done.stdout
        assert f"  - User:{ROLES.console} topic {alerts} WRITE" in done.stdout
        present = set(describe_acls(secure_topics))
        assert stale not in present
        assert outsider in present, "an unmanaged principal's ACL is not the table's to remove"
        assert set(acl_table(secure_topics).acls()) <= present
        with pytest.raises(TopicAuthorizationFailedError):
            produce(console, alerts)

        again = run_cli(["acl", "apply"], env)
        assert "新增 added 0, 删除 removed 0" in again.stdout, "converged: nothing to do"
    finally:
        admin.delete_acls([outsider, stale])
        admin.close()


def test_silences_are_written_by_the_console_and_the_loader_and_only_read_by_the_dispatcher(
    secure_kafka: KafkaBroker, secure_topics: Settings
) -> None:
    """``alert.silences`` (issue 22): the console and ``fangxian silence`` (principal loader)
    write it, the dispatcher reads it and may not write it; a gate device sees nothing."""
    topic = secure_topics.topics.silences
    partitions = partitions_of(secure_topics, topic)
    for role in ("console", "loader"):
        assert produce(as_role(secure_kafka, secure_topics, role), topic, role.encode()).topic == (
            topic
        )
    dispatch = as_role(secure_kafka, secure_topics, "dispatch")
    assert sorted(read_all(dispatch, topic, partitions)) == [b"console", b"loader"]
    with pytest.raises(TopicAuthorizationFailedError):
        produce(dispatch, topic)
    device = as_role(secure_kafka, secure_topics, "device")
    assert topic not in visible_topics(device)
