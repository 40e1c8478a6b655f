"""Kafka credentials in Settings: environment, ``*_FILE`` secrets, and the client kwargs every
client is built with; the ACL table's shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)

from fangxian.cli.acl import role_passwords
from fangxian.core.kafka_security import KafkaSecurityError, for_principal, kafka_client_kwargs
from fangxian.core.settings import Settings, Topics
from infra.acl import acl_table, plan_acls


def test_password_from_a_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "kafka_password"
    secret.write_text("s3cret\n", encoding="utf-8")
    settings = Settings.from_env(
        {
            "FANGXIAN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "FANGXIAN_KAFKA_USERNAME": "decide",
            "FANGXIAN_KAFKA_PASSWORD_FILE": str(secret),
        }
    )
    assert settings.kafka_password == "s3cret"
    assert settings.kafka_username == "decide"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"FANGXIAN_KAFKA_PASSWORD": "a", "FANGXIAN_KAFKA_PASSWORD_FILE": "/x"},
            "not both",
            id="value and file both set",
        ),
        pytest.param(
            {"FANGXIAN_KAFKA_PASSWORD_FILE": "/nonexistent/secret"},
            "cannot read",
            id="secret file missing",
        ),
    ],
)
def test_secret_file_errors_are_clear(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_passwords_stay_out_of_the_settings_repr() -> None:
    settings = Settings(kafka_password="hunter2", pseudonym_key="k3y")
    assert "hunter2" not in repr(settings)
    assert "k3y" not in repr(settings)


SASL = Settings(
    kafka_security_protocol="SASL_PLAINTEXT", kafka_username="device", kafka_password="pw"
)


@pytest.mark.parametrize(
    ("settings", "client", "expected"),
    [
        pytest.param(Settings(), "kafka-python", {"security_protocol": "PLAINTEXT"}, id="plain"),
        pytest.param(
            SASL,
            "kafka-python",
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": "device",
                "sasl_plain_password": "pw",
            },
            id="SASL SCRAM for kafka-python",
        ),
        pytest.param(
            SASL.replace(kafka_security_protocol="sasl_ssl", kafka_ssl_cafile="/ca.pem"),
            "kafka-python",
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": "device",
                "sasl_plain_password": "pw",
                "ssl_check_hostname": True,
                "ssl_cafile": "/ca.pem",
            },
            id="SASL_SSL checks the host name against the CA file",
        ),
    ],
)
def test_client_kwargs(settings: Settings, client: Any, expected: dict[str, Any]) -> None:
    assert kafka_client_kwargs(settings, client) == expected


def test_aiokafka_gets_an_ssl_context_that_verifies() -> None:
    import ssl

    kwargs = kafka_client_kwargs(SASL.replace(kafka_security_protocol="SASL_SSL"), "aiokafka")
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(SASL.replace(kafka_password=""), id="SASL without a password"),
        pytest.param(SASL.replace(kafka_username=""), id="SASL without a user"),
        pytest.param(SASL.replace(kafka_security_protocol="TLS"), id="unknown protocol"),
        pytest.param(SASL.replace(kafka_sasl_mechanism="GSSAPI"), id="unsupported mechanism"),
    ],
)
def test_bad_security_settings_fail_before_connecting(settings: Settings) -> None:
    with pytest.raises(KafkaSecurityError):
        kafka_client_kwargs(settings)


def test_for_principal_switches_plaintext_to_sasl() -> None:
    moved = for_principal(Settings(), "sink", "pw")
    assert (moved.kafka_security_protocol, moved.kafka_username) == ("SASL_PLAINTEXT", "sink")


def test_role_passwords_from_env_and_files(tmp_path: Path) -> None:
    secret = tmp_path / "p"
    secret.write_text("from-file\n", encoding="utf-8")
    env = {
        "FANGXIAN_ACL_PASSWORD_DEVICE": "from-env",
        "FANGXIAN_ACL_PASSWORD_DECIDE_FILE": str(secret),
    }
    assert role_passwords(["device", "decide", "sink"], env) == {
        "device": "from-env",
        "decide": "from-file",
    }


PREFIXED = Settings(app_id="app1", topics=Topics().with_prefix("p."))


def _ops(role: str, name: str) -> set[ACLOperation]:
    table = acl_table(PREFIXED)
    return {op for g in table.grants[role] if g.name == name for op in g.operations}


@pytest.mark.parametrize(
    ("role", "name", "ops"),
    [
        pytest.param("device", "p.gate.scans", {ACLOperation.WRITE}, id="device writes scans"),
        pytest.param("device", "p.gate.decisions", set(), id="device: nothing on decisions"),
        pytest.param("device", "p.reference.residents", set(), id="device: nothing on residents"),
        pytest.param(
            "decide",
            "app1-decide-changelog",
            {ACLOperation.READ, ACLOperation.WRITE},
            id="decide reads and writes its changelog",
        ),
        pytest.param(
            "decide", "p.reference.residents", {ACLOperation.READ}, id="decide reads residents"
        ),
        pytest.param("decide", "p.alerts", {ACLOperation.WRITE}, id="decide writes alerts"),
        pytest.param("sink", "p.alerts", {ACLOperation.READ}, id="sink only reads alerts"),
        pytest.param(
            "dispatch",
            "p.alert.actions",
            {ACLOperation.READ, ACLOperation.WRITE},
            id="dispatch reads and writes alert.actions",
        ),
        pytest.param(
            "loader",
            "p.reference.staff",
            {ACLOperation.READ, ACLOperation.WRITE},
            id="loader writes staff and reads it (fangxian silence checks who may silence)",
        ),
        pytest.param(
            "loader",
            "p.alert.silences",
            {ACLOperation.READ, ACLOperation.WRITE},
            id="loader (fangxian silence) reads and writes silences",
        ),
        pytest.param(
            "console",
            "p.alert.silences",
            {ACLOperation.READ, ACLOperation.WRITE},
            id="console reads and writes silences",
        ),
        pytest.param(
            "dispatch", "p.alert.silences", {ACLOperation.READ}, id="dispatch only reads silences"
        ),
        pytest.param("device", "p.alert.silences", set(), id="device: nothing on silences"),
        pytest.param("console", "p.alerts", {ACLOperation.READ}, id="console only reads alerts"),
        pytest.param(
            "console", "p.gate.decisions", {ACLOperation.READ}, id="console reads decisions"
        ),
        pytest.param(
            "console", "p.reference.staff", {ACLOperation.READ}, id="console reads the staff list"
        ),
        pytest.param(
            "console",
            "p.alert.actions",
            {ACLOperation.READ, ACLOperation.WRITE},
            id="console reads alert.actions and writes its ack/resolve requests",
        ),
        pytest.param("console", "p.reference.residents", set(), id="console: nothing on residents"),
    ],
)
def test_acl_table(role: str, name: str, ops: set[ACLOperation]) -> None:
    assert _ops(role, name) == ops


def test_no_role_may_write_and_read_everything() -> None:
    table = acl_table(PREFIXED)
    for role, grants in table.grants.items():
        for grant in grants:
            assert ACLOperation.ALL not in grant.operations, role
            assert grant.resource is not ResourceType.CLUSTER, role
            assert grant.name, role
        # the only prefixed grant is decide's transactional id
        prefixed = [g for g in grants if g.prefixed]
        assert all(g.resource is ResourceType.TRANSACTIONAL_ID for g in prefixed), role
    assert "bi" not in table.grants, "BI tools have no Kafka access"


def test_console_has_no_group_and_nothing_else() -> None:
    grants = acl_table(PREFIXED).grants["console"]
    assert {g.resource for g in grants} == {ResourceType.TOPIC}
    assert {g.name for g in grants} == {
        "p.gate.decisions",
        "p.alerts",
        "p.alert.actions",
        "p.reference.staff",
        "p.alert.silences",
    }


def _acl(
    user: str,
    topic: str,
    op: ACLOperation = ACLOperation.READ,
    permission: ACLPermissionType = ACLPermissionType.ALLOW,
    host: str = "*",
) -> ACL:
    pattern = ResourcePattern(ResourceType.TOPIC, topic, ACLResourcePatternType.LITERAL)
    return ACL(f"User:{user}", host, op, permission, pattern)


TABLE_ACLS = acl_table(PREFIXED).acls()


@pytest.mark.parametrize(
    ("extra", "stale"),
    [
        pytest.param([], False, id="the table as it is: nothing to remove"),
        pytest.param([_acl("device", "p.alerts")], True, id="a grant the table lost is removed"),
        pytest.param(
            [_acl("console", "p.alerts", ACLOperation.WRITE)],
            True,
            id="an extra operation on a granted topic is removed",
        ),
        pytest.param(
            [_acl("device", "p.gate.scans", ACLOperation.WRITE, host="10.0.0.9")],
            True,
            id="the same grant for one host only is not the table's and is removed",
        ),
        pytest.param(
            [_acl("someone", "p.alerts")], False, id="an unmanaged principal is left alone"
        ),
        pytest.param([_acl("admin", "p.alerts")], False, id="the super user is left alone"),
        pytest.param(
            [_acl("device", "p.alerts", permission=ACLPermissionType.DENY)],
            False,
            id="a DENY is left alone: removing it would widen access",
        ),
    ],
)
def test_plan_converges_on_the_table(extra: list[ACL], stale: bool) -> None:
    plan = plan_acls(acl_table(PREFIXED), [*TABLE_ACLS, *extra])
    assert plan.add == []
    assert plan.remove == (extra if stale else [])


def test_plan_adds_what_is_missing_and_nothing_twice() -> None:
    present = TABLE_ACLS[:3]
    plan = plan_acls(acl_table(PREFIXED), present)
    assert plan.add == TABLE_ACLS[3:]
    assert plan.remove == []
