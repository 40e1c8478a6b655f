"""QR readers: the same scan read the same way whether the reader posts its form or sends it as
the query string (GET mode) — a table of cases, one per input the fuzzer or the field sent."""

from __future__ import annotations

import pytest

from fangxian.edge.adapter import DeviceRequest, IdentifierKind
from fangxian.edge.adapters.qr import QrReaderAdapter

QR = QrReaderAdapter()


def _body(body: bytes) -> DeviceRequest:
    return DeviceRequest("POST", "/edge/qr/", {}, {}, body, "127.0.0.1")


def _query(**fields: str) -> DeviceRequest:
    return DeviceRequest("GET", "/edge/qr/", fields, {}, b"", "127.0.0.1")


@pytest.mark.parametrize(
    ("request_", "identifier", "device_number"),
    [
        pytest.param(
            _body(b"vgdecoderesult=FX1R:tok123:G&&devicenumber=R-01&&otherparams="),
            "FX1R:tok123:G",
            "R-01",
            id="posted form",
        ),
        pytest.param(
            _query(vgdecoderesult="FX1R:tok123:G", devicenumber="R-01"),
            "FX1R:tok123:G",
            "R-01",
            id="GET mode",
        ),
        pytest.param(
            _query(vgdecoderesult=" FX1R:tok123:G\r\n", devicenumber=" R-01 "),
            "FX1R:tok123:G",
            "R-01",
            id="GET mode with padding: stripped as the posted form is",
        ),
        pytest.param(
            _query(vgdecoderesult="\x1c\x1c\x1c", devicenumber="R-01"),
            None,
            "R-01",
            id="GET mode, blank code: nobody identified (found by fuzzing)",
        ),
        pytest.param(
            _body(b"vgdecoderesult=  &&devicenumber=R-01"),
            None,
            "R-01",
            id="posted form, blank code: nobody identified",
        ),
        pytest.param(
            _query(vgdecoderesult="FX1R:tok123:G", devicenumber="  "),
            "FX1R:tok123:G",
            None,
            id="blank device number: none (the register finds the reader otherwise or not)",
        ),
    ],
)
def test_query_and_body_read_alike(
    request_: DeviceRequest, identifier: str | None, device_number: str | None
) -> None:
    parsed = QR.parse(request_)
    (event,) = parsed.events
    assert event.identifier == identifier
    assert event.identifier_kind == IdentifierKind.QR
    assert parsed.identity.device_number == device_number
    assert parsed.delivery == "response"
