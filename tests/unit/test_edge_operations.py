"""The gate edge as an operator runs it: its own Kafka principal (derived from what the service
writes and reads), a role of ``fangxian worker`` when its register is configured (and a
preflight that refuses to start one that could only fail), its compose service, and the rows
``fangxian doctor`` gives it. No broker: the edge here runs on loopback without Kafka."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka.admin import ACLOperation, ResourceType

from fangxian.cli.doctor import FAIL, OK, SKIP, WARN, Doctor
from fangxian.cli.errors import CliError
from fangxian.core.settings import Settings
from fangxian.edge.register import Register, write_register
from fangxian.edge.service import EdgeConfig, EdgeService
from fangxian.worker import edge_configured, supervised_roles, worker_children
from infra.acl import acl_table
from infra.ports import free_port
from schemas.topics import REFERENCE_TOPICS, topic_and_key

ROOT = Path(__file__).resolve().parents[2]
C = "91350100M000100Y43"
SETTINGS = Settings(roster_key="r", ack_link_key="a", pseudonym_key="k" * 32)


def _grants(role: str) -> dict[tuple[ResourceType, str], set[ACLOperation]]:
    out: dict[tuple[ResourceType, str], set[ACLOperation]] = {}
    for grant in acl_table(SETTINGS).grants[role]:
        out.setdefault((grant.resource, grant.name), set()).update(grant.operations)
    return out


# ------------------------------------------------------------------------- the principal


def test_the_edge_principal_writes_what_the_edge_produces_and_nothing_more() -> None:
    t = SETTINGS.topics
    grants = _grants("edge")
    written = {name for (kind, name), ops in grants.items() if ACLOperation.WRITE in ops}
    read = {name for (kind, name), ops in grants.items() if ACLOperation.READ in ops}
    # what the service's outbox holds: scans (and readings, reports), its alert, dead letters
    produced = {
        topic_and_key(t, name, record)[0]
        for name, record in (
            ("GateScan", {"community_id": C}),
            ("Alert", {"community_id": C}),
            ("DeadLetter", {"dead_letter_id": "x", "source_topic": "edge.qr"}),
        )
    }
    events = {t.gate_scans, t.temperature_readings, t.health_reports}
    assert written == events | produced == events | {t.alerts, t.dead_letters}
    # what it follows: the decisions, and the reference topics its replica (ReferenceStore) reads
    from streams.reference import KINDS

    replica = {getattr(t, attr) for _, attr in KINDS.values()}
    assert read == {t.gate_decisions} | replica
    assert replica == {getattr(t, a) for a in REFERENCE_TOPICS}
    # only topics, each either written or read: no group, no transactional id, no decide
    # internals, no roster, no alert.actions
    assert {kind for kind, _ in grants} == {ResourceType.TOPIC}
    assert all(len(ops) == 1 for ops in grants.values())
    assert not read & written


def test_control_the_device_principal_cannot_follow_decisions() -> None:
    """The edge needs a principal of its own: the devices' one only writes events."""
    device = _grants("device")
    assert (ResourceType.TOPIC, SETTINGS.topics.gate_decisions) not in device
    assert set(_grants("edge")) - set(device)


# ---------------------------------------------------------------------- the worker role


@pytest.mark.parametrize(
    ("env", "with_edge"),
    [
        pytest.param({"FANGXIAN_EDGE_REGISTER": "/data/r.json"}, True, id="register-set"),
        pytest.param({"FANGXIAN_EDGE_REGISTER_FILE": "/run/s/r"}, True, id="register-file"),
        pytest.param({"FANGXIAN_EDGE_REGISTER": ""}, False, id="register-empty"),
        pytest.param({}, False, id="not-configured"),
    ],
)
def test_the_worker_runs_the_edge_when_its_register_is_configured(
    env: dict[str, str], with_edge: bool
) -> None:
    assert edge_configured(env) is with_edge
    roles = supervised_roles(SETTINGS, env)
    assert roles == ["decide", "sink", "dispatch", *(["edge"] if with_edge else [])]


def test_the_edge_child_is_the_worker_with_role_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANGXIAN_EDGE_REGISTER", "/data/r.json")
    children = {c.name: c.argv for c in worker_children(SETTINGS, ["--bootstrap", "k:9092"])}
    assert children["edge"][-5:] == ["--bootstrap", "k:9092", "worker", "--role", "edge"]


def _register_file(tmp_path: Path, **extra: Any) -> Path:
    path = tmp_path / "devices.register.json"
    device = {
        "device_id": "api-1",
        "vendor": "generic",
        "community_id": C,
        "gate_id": "east",
        "direction": "IN",
        "serial": "api-1",
        **extra,
    }
    write_register([device], path)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param("no-key", "FANGXIAN_PSEUDONYM_KEY", id="no-pseudonym-key"),
        pytest.param("no-file", "devices.register.json", id="register-missing"),
        pytest.param("sealed-no-key", "FANGXIAN_EDGE_REGISTER_KEY", id="sealed-without-key"),
    ],
)
def test_the_edge_preflight_refuses_an_edge_that_could_only_fail(
    case: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fangxian.cli.worker import preflight_edge

    settings = SETTINGS.replace(pseudonym_key="") if case == "no-key" else SETTINGS
    path = tmp_path / "devices.register.json"
    if case == "sealed-no-key":  # a credential sealed with a key this process does not have
        from fangxian.edge.register import SecretBox

        sealed = SecretBox("the-real-key").seal("pw", "api-1")
        _register_file(tmp_path, auth="basic", username="u", password=sealed)
    elif case == "no-key":
        _register_file(tmp_path)
    monkeypatch.setenv("FANGXIAN_EDGE_REGISTER", str(path))
    monkeypatch.delenv("FANGXIAN_EDGE_REGISTER_KEY", raising=False)
    with pytest.raises(CliError) as raised:
        preflight_edge(settings)
    assert message in raised.value.zh + raised.value.en


def test_the_edge_preflight_passes_a_register_that_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fangxian.cli.worker import preflight_edge

    monkeypatch.setenv("FANGXIAN_EDGE_REGISTER", str(_register_file(tmp_path)))
    preflight_edge(SETTINGS)  # the control of the cases above: no error


# ------------------------------------------------------------------- the compose service

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
PROMETHEUS = yaml.safe_load((ROOT / "infra/prometheus/prometheus.yml").read_text(encoding="utf-8"))


def test_the_edge_has_its_own_compose_service_principal_and_volume() -> None:
    edge = COMPOSE["services"]["edge"]
    env = {k: str(v) for k, v in edge["environment"].items()}
    assert edge["command"] == ["worker", "--role", "edge"]
    assert env["FANGXIAN_KAFKA_USERNAME"] == "edge"
    assert "KAFKA_EDGE_PASSWORD" in env["FANGXIAN_KAFKA_PASSWORD"]
    assert any(v.endswith(":/data") for v in edge["volumes"])  # register and outbox survive
    # what the edge reads of it, through its own settings object
    config = EdgeConfig.from_env(env)
    assert (config.host, config.port, config.metrics_port) == ("0.0.0.0", 8090, 9111)
    assert config.outbox_path.startswith("/data/")
    assert config.register_path.startswith("/data/")
    assert edge_configured(env)
    assert edge["ports"] == ["${FANGXIAN_BIND_ADDRESS:-127.0.0.1}:8090:8090"]
    assert str(config.metrics_port) in edge["expose"]
    targets = [
        t for job in PROMETHEUS["scrape_configs"] for s in job.get("static_configs", ())
        for t in s["targets"]
    ]  # fmt: skip
    assert f"edge:{config.metrics_port}" in targets
    acl = COMPOSE["services"]["acl"]["environment"]
    assert "KAFKA_EDGE_PASSWORD" in acl["FANGXIAN_ACL_PASSWORD_EDGE"]


# --------------------------------------------------------------------------- the doctor


def _rows(doctor: Doctor) -> dict[str, tuple[str, str]]:
    doctor.edge()
    return {c.name: (c.status, c.result) for c in doctor.checks}


def test_doctor_skips_the_edge_where_none_is_configured() -> None:
    rows = _rows(Doctor(SETTINGS, env={}))
    assert [status for status, _ in rows.values()] == [SKIP]


def test_doctor_fails_an_edge_whose_register_does_not_load(tmp_path: Path) -> None:
    env = {
        "FANGXIAN_EDGE_REGISTER": str(tmp_path / "missing.json"),
        "FANGXIAN_EDGE_PORT": str(free_port()),  # nothing listens there
        "FANGXIAN_EDGE_OUTBOX": str(tmp_path / "none.sqlite"),
    }
    rows = _rows(Doctor(SETTINGS, env=env))
    assert [status for status, _ in rows.values()] == [FAIL, WARN, WARN]
    assert "not answering" in rows["边缘网关可达 edge reachable"][1]
    assert not (tmp_path / "none.sqlite").exists()  # the doctor never creates an outbox


def test_doctor_on_a_running_edge_without_kafka_shows_its_outbox_not_draining(
    tmp_path: Path,
) -> None:
    """A real edge on loopback (no Kafka): it answers, says it is not connected, and a record
    accepted two minutes ago still waits in its outbox."""
    register = _register_file(tmp_path)
    outbox = tmp_path / "outbox.sqlite"

    async def main() -> dict[str, tuple[str, str]]:
        service = EdgeService(
            SETTINGS,
            EdgeConfig(port=0, metrics_port=-1, outbox_path=str(outbox)),
            Register.from_file(register, ""),
            kafka=False,
        )
        port = await service.start()
        try:
            db = sqlite3.connect(outbox)
            db.execute(
                "INSERT INTO outbox (event_id, record, topic, key, value, created_ms) "
                "VALUES ('e1', 'GateScan', 'gate.scans', x'00', x'00', ?)",
                (int((time.time() - 120) * 1000),),
            )
            db.commit()
            db.close()
            env = {
                "FANGXIAN_EDGE_REGISTER": str(register),
                "FANGXIAN_EDGE_PORT": str(port),
                "FANGXIAN_EDGE_OUTBOX": str(outbox),
            }
            return await asyncio.to_thread(_rows, Doctor(SETTINGS, env=env))
        finally:
            await service.stop()

    rows = asyncio.run(main())
    assert rows["边缘设备登记 edge register"] == (OK, f"{register}: 1 devices (generic)")
    status, result = rows["边缘网关可达 edge reachable"]
    assert status == WARN and "not connected to Kafka" in result
    status, result = rows["边缘发件箱 edge outbox"]
    assert status == WARN and result.startswith("1 条待发送") and "oldest 12" in result
