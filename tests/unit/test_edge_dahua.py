"""The Dahua access-control adapter as a table of cases: what each native upload becomes, what
it answers, and what it refuses (without quoting raw identifiers)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fangxian.edge.adapter import (
    DeviceAdapter,
    DeviceRequest,
    IdentifierKind,
    MalformedRequest,
    RefusalReason,
    Verdict,
)
from fangxian.edge.adapters.dahua import DahuaAdapter

ADAPTER = DahuaAdapter()
PATH = "/edge/dahua/8E0A5C1PAJ00042"
USER = "R7f3c9a2b"  # a resident token enrolled as the terminal's UserID
CARD = "A1B2C3D4"


def frame(data: dict[str, Any], *, code: str = "AccessControl", indent: int | None = 1) -> str:
    """One event frame as the terminal writes it (multi-line JSON by default)."""
    return f"Code={code};action=Pulse;index=0;data={json.dumps(data, indent=indent)}"


def multipart(*parts: tuple[str, bytes], boundary: str = "myboundary", nl: str = "\r\n") -> bytes:
    out = b""
    for content_type, content in parts:
        out += (
            (
                f"--{boundary}{nl}Content-Type: {content_type}{nl}"
                f"Content-Length: {len(content)}{nl}{nl}"
            ).encode()
            + content
            + nl.encode()
        )
    return out + f"--{boundary}--{nl}".encode()


def request(
    body: bytes,
    content_type: str | None = "multipart/mixed; boundary=myboundary",
    *,
    path: str = PATH,
    query: dict[str, str] | None = None,
) -> DeviceRequest:
    headers = {"content-type": content_type} if content_type is not None else {}
    return DeviceRequest("POST", path, query or {}, headers, body, "192.0.2.10")


FACE_PASS = {
    "RecNo": 1207,
    "UTC": 1796550000,
    "UserID": USER,
    "CardNo": "",
    "Method": 15,
    "Status": 1,
    "ErrorCode": 0,
    "Type": "Entry",
    "Door": 0,
    "ReaderID": "1",
    "CurrentTemperature": 36.6,
    "IsOverTemperature": False,
}
CARD_EXIT = {
    "RecNo": 1208,
    "UTC": 1796550060,
    "CardNo": CARD,
    "Method": 1,
    "Status": 1,
    "ErrorCode": 0,
    "Type": "Exit",
    "Door": 1,
}
FEVER_DENIED = {
    "RecNo": 1209,
    "UTC": 1796550120,
    "UserID": USER,
    "Method": 15,
    "Status": 0,
    "ErrorCode": 96,
    "Type": "Entry",
    "ManTemperatureInfo": {"CurrentTemperature": 38.4, "IsOverTemperature": True},
}
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9"


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        pytest.param(
            request(multipart(("text/plain", frame(FACE_PASS).encode()), ("image/jpeg", JPEG))),
            [("rec1207", "FACE", USER, IdentifierKind.EMPLOYEE_NO, 36.6, "IN", 1796550000000)],
            id="face pass with temperature, snapshot part dropped",
        ),
        pytest.param(
            request(multipart(("text/plain", frame(CARD_EXIT, indent=None).encode()))),
            [("rec1208", "CARD", CARD, IdentifierKind.CARD_NO, None, "OUT", 1796550060000)],
            id="card exit on one line",
        ),
        pytest.param(
            request(multipart(("text/plain", frame(FEVER_DENIED).encode()))),
            [("rec1209", "FACE", USER, IdentifierKind.EMPLOYEE_NO, 38.4, "IN", 1796550120000)],
            id="fever refused by the terminal still reported, nested temperature",
        ),
        pytest.param(
            request(
                multipart(("text/plain", frame(FACE_PASS).encode()), nl="\n"),
                content_type=None,
            ),
            [("rec1207", "FACE", USER, IdentifierKind.EMPLOYEE_NO, 36.6, "IN", 1796550000000)],
            id="no Content-Type, LF line ends: boundary read from the body",
        ),
        pytest.param(
            request(
                multipart(("text/plain", frame(FACE_PASS).encode()))[: -len("--myboundary--\r\n")]
                + b"\r\n\x00\x00garbage after the stream"
            ),
            [("rec1207", "FACE", USER, IdentifierKind.EMPLOYEE_NO, 36.6, "IN", 1796550000000)],
            id="no closing delimiter, trailing garbage after the part's Content-Length",
        ),
        pytest.param(
            request(
                (frame(FACE_PASS) + "\r\n" + frame(CARD_EXIT) + "\r\n").encode(),
                "text/plain",
                path="/edge/dahua/",
                query={"SN": "8E0A5C1PAJ00042"},
            ),
            [
                ("rec1207", "FACE", USER, IdentifierKind.EMPLOYEE_NO, 36.6, "IN", 1796550000000),
                ("rec1208", "CARD", CARD, IdentifierKind.CARD_NO, None, "OUT", 1796550060000),
            ],
            id="two frames in one text part (attach stream), serial in the query",
        ),
        pytest.param(
            request(
                json.dumps(
                    {"Events": [{"Code": "AccessControl", "Action": "Pulse", "Data": CARD_EXIT}]}
                ).encode(),
                "application/json",
            ),
            [("rec1208", "CARD", CARD, IdentifierKind.CARD_NO, None, "OUT", 1796550060000)],
            id="JSON upload with an Events list",
        ),
        pytest.param(
            request(
                multipart(
                    ("text/plain", b"Heartbeat"),
                    ("text/plain", frame({"Status": "Open", "UTC": 1}, code="DoorStatus").encode()),
                    ("text/plain", frame({"UTC": 1796550000, "Method": 5, "RecNo": 3}).encode()),
                )
            ),
            [],
            id="heartbeat, door status and exit button: no scans",
        ),
        pytest.param(
            request(frame({"UTC": "1796550000", "Method": "1", "CardNo": 99112233}).encode(), ""),
            [
                (
                    "t1796550000-d-r-m1",
                    "CARD",
                    "99112233",
                    IdentifierKind.CARD_NO,
                    None,
                    None,
                    1796550000000,
                )
            ],
            id="no RecNo: serial from time, door, reader and method; numbers as strings",
        ),
        pytest.param(
            request(
                frame({**CARD_EXIT, "CurrentTemperature": 98.6, "TemperatureUnit": 1}).encode(),
                "text/plain",
            ),
            [("rec1208", "CARD", CARD, IdentifierKind.CARD_NO, 37.0, "OUT", 1796550060000)],
            id="Fahrenheit converted",
        ),
        pytest.param(
            request(
                multipart(
                    (
                        "text/plain",
                        frame({**FACE_PASS, "CardName": "张三"}).encode("gb18030"),
                    )
                )
            ),
            [("rec1207", "FACE", USER, IdentifierKind.EMPLOYEE_NO, 36.6, "IN", 1796550000000)],
            id="GB18030 name in the frame",
        ),
        pytest.param(
            request(
                multipart(("text/plain", frame(FACE_PASS).encode())).replace(
                    b"Content-Length: ", b"Content-Length: \xb2"
                )
            ),
            [("rec1207", "FACE", USER, IdentifierKind.EMPLOYEE_NO, 36.6, "IN", 1796550000000)],
            id="Content-Length not ASCII digits: ignored (found by fuzzing)",
        ),
    ],
)
def test_parse(req: DeviceRequest, expected: list[tuple[Any, ...]]) -> None:
    parsed = ADAPTER.parse(req)
    assert parsed.identity.keys() == ("8E0A5C1PAJ00042",)
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


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        pytest.param(
            request(multipart(("text/plain", frame(FACE_PASS).encode()[:-20]))),
            "truncated_frame",
            id="frame cut inside its JSON",
        ),
        pytest.param(
            request(b"--otherboundary\r\n\r\nCode=AccessControl"),
            "bad_multipart",
            id="declared boundary absent",
        ),
        pytest.param(
            request(frame({**FACE_PASS, "UserID": ["x"]}).encode(), "text/plain"),
            "bad_field",
            id="UserID not a string",
        ),
        pytest.param(
            request(frame({**FACE_PASS, "UserID": USER * 30}).encode(), "text/plain"),
            "bad_field",
            id="identifier too long",
        ),
        pytest.param(
            request(frame({"UserID": USER, "Method": 15}).encode(), "text/plain"),
            "missing_field",
            id="no RecNo and no UTC: no dedupe key",
        ),
        pytest.param(
            request(frame({**FACE_PASS, "CurrentTemperature": "NaN"}).encode(), "text/plain"),
            "bad_field",
            id="temperature not finite",
        ),
        pytest.param(
            request(b'{"Events": [' + b"[" * 100_000 + b"]}", "application/json"),
            "bad_json",
            id="JSON nested past the recursion limit",
        ),
        pytest.param(request(b"\x80\x81\xff", "text/plain"), "bad_encoding", id="not text"),
        pytest.param(
            request(b"hello, world", "text/plain"), "unrecognised_part", id="neither Code= nor JSON"
        ),
    ],
)
def test_refuses_what_cannot_be_parsed(req: DeviceRequest, reason: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        ADAPTER.parse(req)
    assert caught.value.reason == reason
    # the reason and detail go to logs and a redacted dead letter: no raw identifier in them
    assert USER not in str(caught.value)
    assert CARD not in str(caught.value)


def test_answer_is_a_plain_ok_and_refusals_are_not_200() -> None:
    parsed = ADAPTER.parse(request(multipart(("text/plain", frame(FACE_PASS).encode()))))
    verdict = Verdict(event_serial="rec1207", decision="DENY")
    response = ADAPTER.answer(parsed, [verdict])
    assert (response.status, response.body) == (200, b"OK")
    assert ADAPTER.callbacks(parsed, [verdict]) == ()
    for reason in RefusalReason:
        refusal = ADAPTER.refuse(reason)
        # anything but 200 makes the terminal keep the event and upload it again
        assert refusal.status != 200
        assert refusal.body.startswith(b"Error\r\n")


def test_raw_identifiers_stay_out_of_reprs() -> None:
    parsed = ADAPTER.parse(request(multipart(("text/plain", frame(FACE_PASS).encode()))))
    assert USER not in repr(parsed)
    assert parsed.events[0].identifier == USER


def test_satisfies_the_adapter_protocol() -> None:
    assert isinstance(ADAPTER, DeviceAdapter)
    assert ADAPTER.vendor == "dahua"
    assert PATH.startswith(ADAPTER.path_prefixes)
