"""The ZKTeco PUSH/ADMS adapter as a table of cases: the handshake, ATTLOG and rtlog uploads,
the command poll, and refusals — all plain text, never JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from fangxian.edge.adapter import (
    DeviceAdapter,
    DeviceRequest,
    IdentifierKind,
    MalformedRequest,
    RefusalReason,
)
from fangxian.edge.adapters.zkteco import ZktecoAdapter

ADAPTER = ZktecoAdapter()  # terminals on Beijing time (+08:00)
SN = "CQZ7231260012"
PIN = "R51d0c2e7"
CARD = "0012345678"


def ms(text: str) -> int:
    """Beijing wall-clock time → UTC epoch milliseconds."""
    local = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(local.timestamp() * 1000) - 8 * 3600 * 1000


def cdata(body: str | bytes, table: str, **query: str) -> DeviceRequest:
    data = body.encode() if isinstance(body, str) else body
    return DeviceRequest(
        "POST", "/iclock/cdata", {"SN": SN, "table": table, **query}, {}, data, "192.0.2.20"
    )


ATT_FACE_IN = f"{PIN}\t2026-12-07 08:15:02\t0\t15\t0\t0\t0\t255\t0\t0"
ATT_CARD_OUT = f"{PIN}\t2026-12-07 18:01:40\t1\t2\t\t0\t0"
RT_FACE = (
    f"time=2026-12-07 08:20:11\tpin={PIN}\tcardno=0\teventaddr=1\tevent=0\tinoutstatus=0"
    "\tverifytype=15\tindex=873\ttemperature=36.7\tmaskflag=1"
)
RT_CARD_OUT = (
    f"time=2026-12-07 08:21:00\tpin=0\tcardno={CARD}\teventaddr=2\tevent=0\tinoutstatus=1"
    "\tverifytype=4\tindex=874"
)
RT_DOOR = (
    "time=2026-12-07 08:22:00\tpin=0\tcardno=0\teventaddr=1\tevent=8\tinoutstatus=2\tindex=875"
)


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        pytest.param(
            cdata(ATT_FACE_IN + "\n" + ATT_CARD_OUT + "\n", "ATTLOG", Stamp="9999"),
            [
                (
                    "att-2026-12-07T08:15:02-s0-v15-w0",
                    "FACE",
                    PIN,
                    IdentifierKind.EMPLOYEE_NO,
                    None,
                    None,  # punch state 0 is the factory default: the register's direction
                    ms("2026-12-07 08:15:02"),
                ),
                (
                    "att-2026-12-07T18:01:40-s1-v2-w",
                    "CARD",
                    PIN,
                    IdentifierKind.EMPLOYEE_NO,
                    None,
                    "OUT",
                    ms("2026-12-07 18:01:40"),
                ),
            ],
            id="ATTLOG: face in, card out (tab separated, LF)",
        ),
        pytest.param(
            cdata("\r\n" + ATT_FACE_IN + "\r\n\r\n", "ATTLOG"),
            [
                (
                    "att-2026-12-07T08:15:02-s0-v15-w0",
                    "FACE",
                    PIN,
                    IdentifierKind.EMPLOYEE_NO,
                    None,
                    None,
                    ms("2026-12-07 08:15:02"),
                )
            ],
            id="ATTLOG with CRLF and blank lines",
        ),
        pytest.param(
            cdata(RT_FACE + "\n" + RT_CARD_OUT + "\n" + RT_DOOR + "\n", "rtlog"),
            [
                (
                    "rt873",
                    "FACE",
                    PIN,
                    IdentifierKind.EMPLOYEE_NO,
                    36.7,
                    "IN",
                    ms("2026-12-07 08:20:11"),
                ),
                (
                    "rt874",
                    "CARD",
                    CARD,
                    IdentifierKind.CARD_NO,
                    None,
                    "OUT",
                    ms("2026-12-07 08:21:00"),
                ),
            ],
            id="rtlog: face with temperature, card out, door record skipped",
        ),
        pytest.param(
            cdata(RT_FACE.replace("index=873", "index=0") + "\n", "ATTLOG"),
            [
                (
                    "rt-2026-12-07T08:20:11-e0-d1-v15",
                    "FACE",
                    PIN,
                    IdentifierKind.EMPLOYEE_NO,
                    36.7,
                    "IN",
                    ms("2026-12-07 08:20:11"),
                )
            ],
            id="key=value lines on table=ATTLOG (some firmware), no index",
        ),
        pytest.param(
            cdata("USER PIN=1\tName=x\n", "OPERLOG"), [], id="operation log: taken as OK, no scans"
        ),
        pytest.param(
            cdata(b"PIN=1\tSize=3\tCMD=uploadphoto\x00\xff\xd8\xff", "ATTPHOTO"),
            [],
            id="attendance photo dropped unread",
        ),
    ],
)
def test_parse_uploads(req: DeviceRequest, expected: list[tuple[Any, ...]]) -> None:
    parsed = ADAPTER.parse(req)
    assert parsed.identity.keys() == (SN,)
    assert parsed.delivery == "none"
    got = [
        (
            e.event_serial,
            e.method,
            e.identifier,
            e.identifier_kind,
            e.temperature_c,
            e.direction,
            e.event_time_ms,
        )
        for e in parsed.events
    ]
    assert got == expected


def test_handshake_sets_the_options_in_plain_text() -> None:
    req = DeviceRequest(
        "GET", "/iclock/cdata", {"SN": SN, "options": "all", "pushver": "2.4.1"}, {}, b""
    )
    parsed = ADAPTER.parse(req)
    assert parsed.events == ()
    response = ADAPTER.answer(parsed, ())
    assert response.status == 200
    assert dict(response.headers)["content-type"].startswith("text/plain")
    lines = response.body.decode().splitlines()
    assert lines[0] == f"GET OPTION FROM: {SN}"
    options = dict(line.split("=", 1) for line in lines[1:])
    assert options["Realtime"] == "1"
    assert options["TimeZone"] == "8"
    assert options["Delay"] == "10"
    assert options["TimeoutSec"] == "10"
    assert options["ATTLOGStamp"] == "None"
    assert "AttLog" in options["TransFlag"]


@pytest.mark.parametrize(
    ("req", "body"),
    [
        pytest.param(cdata(ATT_FACE_IN + "\n" + ATT_CARD_OUT, "ATTLOG"), b"OK:2\n", id="ATTLOG"),
        pytest.param(cdata(RT_FACE, "rtlog"), b"OK\n", id="rtlog"),
        pytest.param(
            DeviceRequest("GET", "/iclock/getrequest", {"SN": SN}, {}, b""),
            b"OK\n",
            id="command poll: no command",
        ),
        pytest.param(
            DeviceRequest("POST", "/iclock/devicecmd", {"SN": SN}, {}, b"ID=1&Return=0&CMD=INFO"),
            b"OK\n",
            id="command result",
        ),
        pytest.param(
            DeviceRequest("GET", "/iclock/ping", {"SN": SN}, {}, b""), b"OK\n", id="PUSH 3 ping"
        ),
    ],
)
def test_answers_are_plain_ok(req: DeviceRequest, body: bytes) -> None:
    response = ADAPTER.answer(ADAPTER.parse(req), ())
    assert (response.status, response.body) == (200, body)
    with pytest.raises(ValueError):  # never JSON: a terminal resends a batch answered in JSON
        json.loads(response.body)


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        pytest.param(
            cdata(f"{PIN}\t2026-13-07 08:15:02\t0\t15", "ATTLOG"), "bad_time", id="month 13"
        ),
        pytest.param(cdata(f"{PIN}\t07/12/2026 08:15\t0", "ATTLOG"), "bad_time", id="time format"),
        pytest.param(cdata(f"{PIN}\t0001-01-01 00:00:00", "ATTLOG"), "bad_time", id="year 1"),
        pytest.param(cdata(PIN, "ATTLOG"), "bad_record", id="PIN alone"),
        pytest.param(cdata("\t2026-12-07 08:15:02\t0\t15", "ATTLOG"), "missing_field", id="no PIN"),
        pytest.param(
            cdata(f"{PIN}\t2026-12-07 08:15:02\tx\t15", "ATTLOG"), "bad_field", id="status not int"
        ),
        pytest.param(
            cdata(RT_FACE.replace("temperature=36.7", "temperature=hot"), "rtlog"),
            "bad_field",
            id="temperature not a number",
        ),
        pytest.param(cdata(f"pin={PIN}\tindex=1", "rtlog"), "missing_field", id="rtlog no time"),
        pytest.param(cdata(RT_FACE + "\tjunk", "rtlog"), "bad_record", id="rtlog field not k=v"),
        pytest.param(
            cdata(f"{PIN * 10}\t2026-12-07 08:15:02", "ATTLOG"), "bad_field", id="PIN too long"
        ),
        pytest.param(cdata(b"\x80\xff\xfe", "ATTLOG"), "bad_encoding", id="not text"),
        pytest.param(cdata("x", "SOMETHING"), "unknown_table", id="unknown table"),
        pytest.param(
            DeviceRequest("POST", "/iclock/upgrade", {"SN": SN}, {}, b""),
            "unknown_endpoint",
            id="unknown endpoint",
        ),
    ],
)
def test_refuses_what_cannot_be_parsed(req: DeviceRequest, reason: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        ADAPTER.parse(req)
    assert caught.value.reason == reason
    assert PIN not in str(caught.value)
    assert CARD not in str(caught.value)


def test_refusals_are_plain_text_and_not_ok() -> None:
    for reason in RefusalReason:
        response = ADAPTER.refuse(reason)
        assert response.status != 200
        assert dict(response.headers)["content-type"].startswith("text/plain")
        assert not response.body.startswith(b"OK")  # the terminal keeps the batch and resends


def test_utc_offset_is_the_adapters_setting() -> None:
    utc_terminal = ZktecoAdapter(utc_offset_minutes=0)
    event = utc_terminal.parse(cdata(ATT_FACE_IN, "ATTLOG")).events[0]
    assert event.event_time_ms == ms("2026-12-07 08:15:02") + 8 * 3600 * 1000


def test_a_resent_batch_has_the_same_serials() -> None:
    first = ADAPTER.parse(cdata(ATT_FACE_IN + "\n" + ATT_CARD_OUT, "ATTLOG"))
    again = ADAPTER.parse(cdata(ATT_CARD_OUT + "\r\n" + ATT_FACE_IN, "ATTLOG", Stamp="1"))
    assert {e.event_serial for e in first.events} == {e.event_serial for e in again.events}


def test_satisfies_the_adapter_protocol() -> None:
    assert isinstance(ADAPTER, DeviceAdapter)
    assert ADAPTER.vendor == "zkteco"
    assert "/iclock/cdata".startswith(ADAPTER.path_prefixes)
