"""The edge's pure parts and its outbox: register CSV (line numbers, sealed credentials),
subjects and event ids, the fallback policy, the outbox's dedupe and durability."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from fangxian.core.privacy import Pseudonymiser
from fangxian.edge.adapter import DeviceRequest, IdentifierKind, NativeEvent
from fangxian.edge.fallback import FallbackPolicy, Replica, fallback_decision
from fangxian.edge.outbox import Outbox, OutRow
from fangxian.edge.register import (
    DeviceEntry,
    Register,
    RegisterError,
    SecretBox,
    load_devices,
    write_register,
)
from fangxian.edge.translate import contract_records, event_id, resolve_subject
from schemas import Codec
from schemas.topics import vehicle_key

C = "91350100M000100Y43"
OTHER_C = "55110105MJ0A1B2C39"
RAW_ID = "11010519491231002X"
P = Pseudonymiser.from_text("unit-test-key")
HEADER = (
    "device_id,vendor,serial,mac,device_number,community_id,gate_id,direction,measures,answers,"
    "timeout_ms,addresses,auth,username,password,callback_url\n"
)


def _csv(tmp_path: Path, rows: str) -> Path:
    path = tmp_path / "devices.csv"
    path.write_text(HEADER + rows, encoding="utf-8")
    return path


def test_register_csv_seals_credentials_and_round_trips(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        f"hik-1,hikvision,,AA-BB-CC-DD-EE-01,,{C},east,IN,temperature;face,wait,2000,"
        "127.0.0.1,digest,admin,s3cret-terminal,http://127.0.0.1:8081\n"
        f"cam-1,plate,CAM0001,,,{C},car-gate,IN,plate,wait,1500,,path,,"
        "path-secret-0123456789,\n",
    )
    box = SecretBox("register-key")
    load = load_devices(path, box)
    assert load.errors == [] and len(load.records) == 2
    out = tmp_path / "register.json"
    write_register(load.records, out)
    text = out.read_text(encoding="utf-8")
    assert "s3cret-terminal" not in text and "path-secret-0123456789" not in text
    register = Register.from_file(out, "register-key")
    hik = register.entries["hik-1"]
    assert hik.password == "s3cret-terminal" and hik.mac == "aa:bb:cc:dd:ee:01"
    assert "s3cret" not in repr(hik)
    with pytest.raises(RegisterError):
        Register.from_file(out, "another-key")


@pytest.mark.parametrize(
    ("row", "line", "field"),
    [
        pytest.param(f"d1,sony,,,,{C},g,IN,,,,,none,,,\n", 2, "vendor", id="unknown vendor"),
        pytest.param(
            f"d1,qr,,,,{C[:-1]}0,g,IN,,,,1.2.3.4,none,,,\n", 2, "community_id", id="bad credit code"
        ),
        pytest.param(
            f"d1,qr,,,,{C},g,SIDEWAYS,,,,1.2.3.4,none,,,\n", 2, "direction", id="bad direction"
        ),
        pytest.param(f"d1,qr,,,,{C},g,IN,,,,,none,,,\n", 2, "auth", id="no auth and no address"),
        pytest.param(
            f"d1,qr,,,,{C},g,IN,,,,1.2.3.4,path,,short,\n", 2, "password", id="short path secret"
        ),
        pytest.param(
            f"d1,qr,,,7,{C},g,IN,,,,1.2.3.4,none,,,\nd2,qr,,,7,{C},g,OUT,,,,1.2.3.4,none,,,\n",
            3,
            "serial",
            id="same device number twice",
        ),
    ],
)
def test_register_csv_problems_have_line_numbers(
    tmp_path: Path, row: str, line: int, field: str
) -> None:
    load = load_devices(_csv(tmp_path, row), SecretBox("k"))
    assert [(p.line, p.field) for p in load.errors][:1] == [(line, field)]


def _entry(**kw: object) -> DeviceEntry:
    values: dict[str, object] = dict(
        device_id="dev-1", vendor="qr", community_id=C, gate_id="east", direction="IN"
    )
    values.update(kw)
    return DeviceEntry(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("identifier", "kind", "subject_type", "subject_id", "health"),
    [
        pytest.param(
            "a" * 32,
            IdentifierKind.EMPLOYEE_NO,
            "RESIDENT",
            "a" * 32,
            None,
            id="enrolled under the resident token",
        ),
        pytest.param(
            RAW_ID,
            IdentifierKind.EMPLOYEE_NO,
            "RESIDENT",
            P.token("resident", RAW_ID),
            None,
            id="raw ID number as employee number",
        ),
        pytest.param(
            "闽A12345",
            IdentifierKind.PLATE,
            "VEHICLE",
            P.token("plate", "闽A12345"),
            None,
            id="plate",
        ),
        pytest.param(
            f"FX1R:{'b' * 32}:R",
            IdentifierKind.QR,
            "RESIDENT",
            "b" * 32,
            "RED",
            id="community resident code, red",
        ),
        pytest.param(
            "FX1V:00042",
            IdentifierKind.QR,
            "VISITOR",
            P.token("pass", C + "00042"),
            None,
            id="visitor pass",
        ),
        pytest.param(
            "https://example.invalid/x",
            IdentifierKind.QR,
            "UNKNOWN",
            P.token("qr", "https://example.invalid/x"),
            None,
            id="foreign QR",
        ),
    ],
)
def test_subjects(identifier, kind, subject_type, subject_id, health) -> None:
    event = NativeEvent("1", "QR", identifier=identifier, identifier_kind=kind)
    subject = resolve_subject(event, _entry(), P)
    assert (subject.subject_type, subject.subject_id, subject.health_code) == (
        subject_type,
        subject_id,
        health,
    )


def test_records_are_valid_contract_and_ids_come_from_the_device_serial() -> None:
    event = NativeEvent(
        "77",
        "FACE",
        identifier=RAW_ID,
        identifier_kind=IdentifierKind.ID_NUMBER,
        temperature_c=38.1,
    )
    entry = _entry(vendor="hikvision")
    records = contract_records(event, entry, resolve_subject(event, entry, P), 1_700_000_000_000)
    ((name, scan),) = records
    Codec().encode(name, scan)
    assert scan["event_id"] == event_id("dev-1", "77") != event_id("dev-2", "77")
    assert scan["temperature_c"] == 38.1 and scan["direction"] == "IN"
    assert RAW_ID not in json.dumps(records)


REPLICA = Replica(
    residents={
        "r-ok": {"community_id": C, "status": "NORMAL"},
        "r-home": {"community_id": C, "status": "HOME_OBSERVATION"},
        "r-far": {"community_id": OTHER_C, "status": "NORMAL"},
        "r-far-home": {"community_id": OTHER_C, "status": "HOME_OBSERVATION"},
    },
    vehicles={
        vehicle_key(C, "v-ok"): {"community_id": C},
        vehicle_key(OTHER_C, "v-far"): {"community_id": OTHER_C},
    },
    passes={
        "p-ok": {"community_id": C, "revoked": False},
        "p-rev": {"community_id": C, "revoked": True},
    },
    rules={C: {"fever_threshold_c": 37.5}},
)


def _scan(**kw: object) -> dict[str, object]:
    scan: dict[str, object] = dict(
        community_id=C,
        subject_type="RESIDENT",
        subject_id="r-ok",
        direction="IN",
        health_code="GREEN",
        temperature_c=None,
    )
    scan.update(kw)
    return scan


@pytest.mark.parametrize(
    ("scan", "policy", "decision", "reason"),
    [
        pytest.param(_scan(), FallbackPolicy(), "ALLOW", None, id="registered resident"),
        pytest.param(
            _scan(health_code="RED"), FallbackPolicy(), "DENY", "HEALTH_CODE_RED", id="red code"
        ),
        pytest.param(
            _scan(health_code="RED"),
            FallbackPolicy(red_code="RECHECK"),
            "RECHECK",
            "HEALTH_CODE_RED",
            id="red code, community chose recheck",
        ),
        pytest.param(
            _scan(temperature_c=37.4),
            FallbackPolicy(),
            "ALLOW",
            None,
            id="below this community's threshold (37.5)",
        ),
        pytest.param(
            _scan(temperature_c=37.5),
            FallbackPolicy(),
            "RECHECK",
            "FEVER_RECHECK",
            id="at the threshold",
        ),
        pytest.param(
            _scan(subject_id="r-home", direction="OUT"),
            FallbackPolicy(),
            "DENY",
            "QUARANTINE_BREACH",
            id="home observation going out",
        ),
        pytest.param(
            _scan(subject_id="r-home"),
            FallbackPolicy(),
            "ALLOW",
            None,
            id="home observation coming in",
        ),
        pytest.param(
            _scan(subject_id="r-far"),
            FallbackPolicy(),
            "DENY",
            "UNKNOWN_SUBJECT",
            id="resident of another community",
        ),
        pytest.param(
            _scan(subject_id="nobody"),
            FallbackPolicy(unknown_subject="RECHECK"),
            "RECHECK",
            "UNKNOWN_SUBJECT",
            id="unknown resident, recheck",
        ),
        pytest.param(
            _scan(subject_type="VEHICLE", subject_id="v-ok"),
            FallbackPolicy(),
            "ALLOW",
            None,
            id="registered vehicle",
        ),
        pytest.param(
            _scan(subject_type="VEHICLE", subject_id="v-far"),
            FallbackPolicy(),
            "DENY",
            "VEHICLE_UNREGISTERED",
            id="vehicle registered in another community only",
        ),
        pytest.param(
            _scan(subject_type="VEHICLE", subject_id="v-no"),
            FallbackPolicy(),
            "DENY",
            "VEHICLE_UNREGISTERED",
            id="unregistered vehicle",
        ),
        pytest.param(
            _scan(subject_type="VISITOR", subject_id="p-rev"),
            FallbackPolicy(),
            "DENY",
            "PASS_INVALID",
            id="revoked pass",
        ),
        pytest.param(
            _scan(subject_type="UNKNOWN", subject_id="x"),
            FallbackPolicy(),
            "DENY",
            "UNKNOWN_SUBJECT",
            id="unidentified",
        ),
        # nobody is kept inside (docs/rules.md behaviour 2): going out, let out with a warning
        pytest.param(
            _scan(subject_id="r-nobody", direction="OUT"),
            FallbackPolicy(),
            "WARN",
            "UNKNOWN_SUBJECT",
            id="unknown resident going out",
        ),
        pytest.param(
            _scan(subject_type="VEHICLE", subject_id="v-nobody", direction="OUT"),
            FallbackPolicy(unknown_subject="RECHECK"),
            "WARN",
            "VEHICLE_UNREGISTERED",
            id="unregistered vehicle going out",
        ),
        pytest.param(
            _scan(subject_type="VISITOR", subject_id="p-rev", direction="OUT"),
            FallbackPolicy(),
            "WARN",
            "PASS_INVALID",
            id="revoked pass going out",
        ),
        pytest.param(
            _scan(subject_type="VISITOR", subject_id="p-rev", direction="OUT", health_code="RED"),
            FallbackPolicy(),
            "DENY",
            "HEALTH_CODE_RED",
            id="revoked pass going out with a red code",
        ),
        pytest.param(
            _scan(subject_id="r-far", direction="OUT"),
            FallbackPolicy(),
            "WARN",
            "UNKNOWN_SUBJECT",
            id="another community's resident going out",
        ),
        pytest.param(
            _scan(subject_id="r-far-home", direction="OUT"),
            FallbackPolicy(),
            "DENY",
            "QUARANTINE_BREACH",
            id="another community's resident under observation going out",
        ),
    ],
)
def test_fallback_policy(scan, policy, decision, reason) -> None:
    got, reasons = fallback_decision(scan, REPLICA, policy)
    assert got == decision
    assert (reason in reasons) if reason else reasons == ()


def test_fallback_policy_takes_only_deny_or_recheck() -> None:
    with pytest.raises(ValueError):
        FallbackPolicy(fever="ALLOW")


def _row(eid: str) -> OutRow:
    return OutRow(eid, "GateScan", "gate.scans", b"k", b"v" + eid.encode())


def test_outbox_dedupes_resends_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    assert box.append_now([[_row("e1")]]) == [[True]]
    for _ in range(4):
        assert box.append_now([[_row("e1")]]) == [[False]]
    assert box.append_now([[_row("e2"), _row("e1")]]) == [[True, False]]
    box.close()
    # a crash after the commit: another connection (process) sees both rows, in order
    assert [
        r[0] for r in sqlite3.connect(path).execute("SELECT event_id FROM outbox ORDER BY seq")
    ] == ["e1", "e2"]
    again = Outbox(path)
    pending = again.pending()
    assert [p.event_id for p in pending] == ["e1", "e2"]
    again.mark_produced([pending[0].seq])
    assert [p.event_id for p in again.pending()] == ["e2"]
    assert again.depth_and_age()[0] == 1
    assert again.append_now([[_row("e1")]]) == [[False]]  # produced, still deduplicated
    mode = again._db.execute("PRAGMA journal_mode").fetchone()[0]
    sync = again._db.execute("PRAGMA synchronous").fetchone()[0]
    assert (mode, sync) == ("wal", 2)  # 2 = FULL: the commit fsyncs
    again.close()


def test_outbox_group_commit_answers_each_caller(tmp_path: Path) -> None:
    import asyncio

    box = Outbox(tmp_path / "o.sqlite")

    async def many() -> list[list[bool]]:
        return await asyncio.gather(*(box.append([_row(f"e{i % 5}")]) for i in range(20)))

    results = asyncio.run(many())
    assert sum(flags[0] for flags in results) == 5
    box.close()


def test_two_people_in_the_same_second_at_a_terminal_without_record_numbers_are_two_events() -> (
    None
):
    """ZKTeco ATTLOG lines carry no record number: the serial is the device time (and status,
    verify mode, work code). Two people punching in the same second used to be one event id —
    the second pass was dropped as a resend. The pseudonym now goes into the id (never the raw
    employee number), and a resend of either line is still the same event."""
    from fangxian.edge.adapters.zkteco import ZktecoAdapter

    line = "{pin}\t2026-12-07 08:15:02\t0\t15\t0\t0\t0\t255\t0\t0"
    body = "\n".join(line.format(pin=p) for p in ("1001", "1002"))
    request = DeviceRequest(
        method="POST",
        path="/iclock/cdata",
        query={"SN": "ZK1", "table": "ATTLOG"},
        headers={},
        body=body.encode(),
        peer="127.0.0.1",
    )
    entry = _entry(vendor="zkteco")

    def ids(req: DeviceRequest) -> list[str]:
        events = ZktecoAdapter().parse(req).events
        return [
            rec["event_id"]
            for e in events
            for _, rec in contract_records(e, entry, resolve_subject(e, entry, P), 0)
        ]

    first = ids(request)
    assert len(set(first)) == 2
    assert ids(request) == first  # the batch sent again: the same two events
    assert all("1001" not in i and "1002" not in i for i in first)
