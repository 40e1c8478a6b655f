"""Each device family: native payload in → events out → native answer back (tables of cases)."""

from __future__ import annotations

import json

import pytest

from fangxian.edge.adapter import (
    DeviceAdapter,
    DeviceRequest,
    IdentifierKind,
    MalformedRequest,
    RefusalReason,
    Verdict,
)
from fangxian.edge.adapters.generic import OPENAPI, GenericJsonAdapter
from fangxian.edge.adapters.hikvision import REMOTE_CHECK_PATH, HikvisionAdapter
from fangxian.edge.adapters.plate import PlateCameraAdapter
from fangxian.edge.adapters.qr import QrReaderAdapter
from infra.fake_devices import (
    FAKE_JPEG,
    hikvision_event,
    hikvision_push,
    plate_alarm,
    qr_form,
)

RAW_ID = "350102199001011234"


def _req(body: bytes, content_type: str | None, path: str = "/edge/x/") -> DeviceRequest:
    headers = {"content-type": content_type} if content_type else {}
    return DeviceRequest("POST", path, {}, headers, body, "127.0.0.1")


def test_every_adapter_satisfies_the_interface() -> None:
    for adapter in (HikvisionAdapter(), PlateCameraAdapter(), QrReaderAdapter()):
        assert isinstance(adapter, DeviceAdapter)
    assert isinstance(GenericJsonAdapter(), DeviceAdapter)


# --- Hikvision ------------------------------------------------------------------------------

HIK = HikvisionAdapter()


@pytest.mark.parametrize(
    ("event", "with_image", "content_type", "method", "kind", "temp", "delivery"),
    [
        pytest.param(
            hikvision_event(serial_no=7, employee_no="tok-abc", temperature_c=36.6),
            True,
            "multipart",
            "FACE",
            IdentifierKind.EMPLOYEE_NO,
            36.6,
            "none",
            id="face pass with temperature and a JPEG part",
        ),
        pytest.param(
            hikvision_event(
                serial_no=8, employee_no="tok-abc", temperature_c=38.2, remote_check=True
            ),
            True,
            "multipart",
            "FACE",
            IdentifierKind.EMPLOYEE_NO,
            38.2,
            "callback",
            id="remote verification waits for a callback",
        ),
        pytest.param(
            hikvision_event(serial_no=9, card_no="1234567890"),
            False,
            "multipart",
            "CARD",
            IdentifierKind.CARD_NO,
            None,
            "none",
            id="card only, no image",
        ),
        pytest.param(
            hikvision_event(serial_no=10, employee_no=RAW_ID),
            True,
            None,
            "FACE",
            IdentifierKind.EMPLOYEE_NO,
            None,
            "none",
            id="multipart without a Content-Type (boundary sniffed)",
        ),
        pytest.param(
            hikvision_event(serial_no=11, qr="FX1R:tok:G"),
            False,
            "json",
            "QR",
            IdentifierKind.QR,
            None,
            "none",
            id="plain JSON body, QR code info",
        ),
    ],
)
def test_hikvision_push(event, with_image, content_type, method, kind, temp, delivery) -> None:
    if content_type == "json":
        body, ctype = json.dumps(event).encode(), "application/json"
    else:
        body, ctype = hikvision_push(event, with_image=with_image)
        if content_type is None:
            ctype = None
    parsed = HIK.parse(_req(body, ctype))
    assert parsed.identity.mac == "aa:bb:cc:dd:ee:01"
    (native,) = parsed.events
    ace = event["AccessControllerEvent"]
    assert native.event_serial == str(ace["serialNo"])
    assert (native.method, native.identifier_kind, native.temperature_c) == (method, kind, temp)
    assert native.event_time_ms == 1796601600000  # 2026-12-07T08:00:00+08:00
    assert parsed.delivery == delivery
    assert FAKE_JPEG[4:40] not in repr(parsed).encode()
    answer = HIK.answer(parsed, ())
    assert answer.status == 200


@pytest.mark.parametrize(
    ("decision", "result"),
    [("ALLOW", "success"), ("WARN", "success"), ("RECHECK", "failed"), ("DENY", "failed")],
)
def test_hikvision_remote_check_callback(decision: str, result: str) -> None:
    body, ctype = hikvision_push(hikvision_event(serial_no=42, employee_no="t", remote_check=True))
    parsed = HIK.parse(_req(body, ctype))
    (call,) = HIK.callbacks(parsed, [Verdict("42", decision)])  # type: ignore[arg-type]
    assert (call.method, call.path) == ("PUT", REMOTE_CHECK_PATH)
    sent = json.loads(call.body)["RemoteCheck"]
    assert sent["serialNo"] == 42 and sent["checkResult"] == result
    assert len(sent["info"]) <= 32


@pytest.mark.parametrize(
    ("body", "ctype", "events"),
    [
        pytest.param(
            json.dumps({"eventType": "heartBeat", "macAddress": "aa:bb:cc:dd:ee:01"}).encode(),
            "application/json",
            0,
            id="heartbeat",
        ),
        pytest.param(
            json.dumps(
                {
                    "eventType": "AccessControllerEvent",
                    "AccessControllerEvent": {
                        "majorEventType": 5,
                        "subEventType": 21,
                        "serialNo": 3,
                        "doorNo": 1,
                    },
                }
            ).encode(),
            "application/json",
            0,
            id="door opened (no person)",
        ),
        pytest.param(
            b"--B\r\nContent-Type: image/jpeg\r\n\r\n" + FAKE_JPEG + b"\r\n--B--\r\n",
            "multipart/form-data; boundary=B",
            0,
            id="only an image part",
        ),
    ],
)
def test_hikvision_non_scan_requests_produce_nothing(body: bytes, ctype: str, events: int) -> None:
    assert len(HIK.parse(_req(body, ctype)).events) == events


@pytest.mark.parametrize(
    ("body", "ctype", "reason"),
    [
        pytest.param(b"", "application/json", "empty_body", id="empty"),
        pytest.param(b"garbage, not json", None, "bad_json", id="not JSON, no Content-Type"),
        pytest.param(b"\xff\xfe\xff", None, "bad_encoding", id="not text"),
        pytest.param(
            json.dumps(hikvision_event(serial_no=1, employee_no="x"))[:-40].encode() + b"!!",
            "application/json",
            "bad_json",
            id="cut and corrupted",
        ),
        pytest.param(
            json.dumps(
                {"AccessControllerEvent": {"majorEventType": 5, "employeeNoString": "x"}}
            ).encode(),
            "application/json",
            "missing_field",
            id="pass without serialNo",
        ),
    ],
)
def test_hikvision_malformed(body: bytes, ctype: str | None, reason: str) -> None:
    with pytest.raises(MalformedRequest) as info:
        HIK.parse(_req(body, ctype))
    assert info.value.reason == reason
    assert "x" not in info.value.detail.split() and RAW_ID not in info.value.detail


def test_hikvision_refusals_are_not_200() -> None:
    assert HIK.refuse(RefusalReason.UNAUTHENTICATED).status == 401
    assert HIK.refuse(RefusalReason.UNAVAILABLE).status == 503  # the terminal resends later


# --- plate cameras --------------------------------------------------------------------------

PLATE = PlateCameraAdapter()


@pytest.mark.parametrize(
    ("body", "ctype", "identifier", "offline"),
    [
        pytest.param(
            plate_alarm(serialno="cam-1", licence="闽A12345", plate_id=5),
            "application/json",
            "闽A12345",
            False,
            id="a plate",
        ),
        pytest.param(
            plate_alarm(serialno="cam-1", licence="闽A12345", plate_id=5, truncate=True),
            None,
            "闽A12345",
            False,
            id="truncated JSON, no Content-Type",
        ),
        pytest.param(
            plate_alarm(serialno="cam-1", licence="_无_", plate_id=6),
            "text/plain",
            None,
            False,
            id="vehicle without a readable plate",
        ),
        pytest.param(
            plate_alarm(serialno="cam-1", licence="闽A12345", plate_id=7, offline=True),
            "application/json",
            "闽A12345",
            True,
            id="offline backlog replay",
        ),
    ],
)
def test_plate_alarm(body: bytes, ctype: str | None, identifier, offline: bool) -> None:
    parsed = PLATE.parse(_req(body, ctype))
    assert parsed.identity.serial == "cam-1"
    (event,) = parsed.events
    assert event.method == "PLATE" and event.identifier == identifier
    assert event.event_time_ms == 1796601600120
    assert event.offline is offline
    assert parsed.delivery == ("none" if offline else "response")


def test_plate_resend_has_the_same_serial_and_a_reboot_does_not_collide() -> None:
    a = PLATE.parse(_req(plate_alarm(serialno="c", licence="闽A1", plate_id=5), None)).events[0]
    b = PLATE.parse(_req(plate_alarm(serialno="c", licence="闽A1", plate_id=5), None)).events[0]
    later = PLATE.parse(
        _req(plate_alarm(serialno="c", licence="闽A1", plate_id=5, sec=1_796_700_000), None)
    ).events[0]
    assert a.event_serial == b.event_serial != later.event_serial


@pytest.mark.parametrize(
    ("decision", "info"), [("ALLOW", "ok"), ("WARN", "ok"), ("DENY", "no"), ("RECHECK", "no")]
)
def test_plate_answer_opens_only_on_ok(decision: str, info: str) -> None:
    parsed = PLATE.parse(_req(plate_alarm(serialno="c", licence="闽A1", plate_id=9), None))
    answer = PLATE.answer(parsed, [Verdict(parsed.events[0].event_serial, decision)])  # type: ignore[arg-type]
    body = json.loads(answer.body)["Response_AlarmInfoPlate"]
    assert answer.status == 200 and body["info"] == info and body["plateid"] == 9


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"AlarmInfoPlate": [1, 2}', id="mismatched brackets"),
        pytest.param(b'{"AlarmInfoPlate": {"serialno": "c", "result": {}}}', id="no result"),
        pytest.param(b"license=abc", id="a form, not JSON"),
    ],
)
def test_plate_malformed(body: bytes) -> None:
    with pytest.raises(MalformedRequest):
        PLATE.parse(_req(body, None))
    refusal = json.loads(PLATE.refuse(RefusalReason.MALFORMED).body)
    assert refusal["Response_AlarmInfoPlate"]["info"] == "no"


def test_plate_heartbeat_is_only_answered() -> None:
    parsed = PLATE.parse(_req(b'{"heartbeat": {"serialno": "cam-1"}}', None))
    assert parsed.events == () and parsed.identity.serial == "cam-1"
    assert json.loads(PLATE.answer(parsed, ()).body)["Response_AlarmInfoPlate"]["info"] == "ok"


# --- QR readers -----------------------------------------------------------------------------

QR = QrReaderAdapter()


@pytest.mark.parametrize(
    ("decision", "answer"),
    [
        ("ALLOW", "code=0000"),
        ("WARN", "code=0000"),
        ("DENY", "code=0001"),
        ("RECHECK", "code=0002"),
    ],
)
def test_qr_reader(decision: str, answer: str) -> None:
    parsed = QR.parse(_req(qr_form("FX1R:tok123:G", "R-01"), None))
    assert parsed.identity.device_number == "R-01" and parsed.delivery == "response"
    (event,) = parsed.events
    assert event.identifier == "FX1R:tok123:G" and event.identifier_kind == IdentifierKind.QR
    response = QR.answer(parsed, [Verdict("", decision)])  # type: ignore[arg-type]
    assert response.body.decode() == answer


def test_qr_plain_ampersand_form_and_refusals() -> None:
    parsed = QR.parse(
        _req(b"vgdecoderesult=abc%3Ad&devicenumber=7", "application/x-www-form-urlencoded")
    )
    assert parsed.events[0].identifier == "abc:d" and parsed.identity.device_number == "7"
    with pytest.raises(MalformedRequest):
        QR.parse(_req(b"devicenumber=7", None))
    assert QR.refuse(RefusalReason.UNKNOWN_DEVICE).body != b"code=0000"


# --- generic JSON API -----------------------------------------------------------------------

GEN = GenericJsonAdapter()
SCANS = "/edge/api/v1/scans"


def test_generic_scan_and_answer() -> None:
    body = json.dumps(
        {
            "device_id": "api-1",
            "event_serial": "s1",
            "method": "CARD",
            "identifier": "998877",
            "identifier_kind": "card_no",
            "event_time": "2026-12-07T08:00:00+08:00",
            "temperature_c": 36.5,
            "direction": "OUT",
        }
    ).encode()
    parsed = GEN.parse(_req(body, "application/json", SCANS))
    (event,) = parsed.events
    assert parsed.identity.serial == "api-1" and parsed.delivery == "response"
    assert (event.event_time_ms, event.direction, event.identifier_kind) == (
        1796601600000,
        "OUT",
        IdentifierKind.CARD_NO,
    )
    out = json.loads(GEN.answer(parsed, [Verdict("s1", "DENY", "edge-fallback", ("X",))]).body)
    assert out["results"] == [
        {
            "event_serial": "s1",
            "decision": "DENY",
            "opens": False,
            "source": "edge-fallback",
            "reasons": ["X"],
        }
    ]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"event_serial": "s"}, id="no method"),
        pytest.param({"event_serial": "s", "method": "TELEPATHY"}, id="unknown method"),
        pytest.param({"scans": []}, id="empty batch"),
        pytest.param({"event_serial": "s", "method": "QR", "event_time": "08:00"}, id="bad time"),
    ],
)
def test_generic_malformed(payload: dict) -> None:
    with pytest.raises(MalformedRequest):
        GEN.parse(_req(json.dumps(payload).encode(), "application/json", SCANS))


def test_openapi_document_names_the_route_and_enums() -> None:
    post = OPENAPI["paths"]["/edge/api/v1/scans"]["post"]
    assert set(post["responses"]) >= {"200", "400", "401", "403", "429", "503"}
    json.dumps(OPENAPI)  # serialisable
