"""QR-code readers at turnstiles (the common Chinese "二维码读头" HTTP mode).

The reader POSTs a form whose fields are separated by ``&&`` (not ``&``)::

    vgdecoderesult=<decoded text>&&devicenumber=<reader number>&&otherparams=<free text>

and opens the turnstile when the text body of the answer is ``code=0000``; any other code keeps
it shut (codes below). Readers do not number their scans and do not resend (they time out and
show a failure), so the event serial is left empty and the service gives every request its own
event id. What the QR text means (a community resident code, a visitor pass) is decided by the
service's identity step (docs/edge.md, "QR formats"); the text itself never leaves the edge.
"""

from __future__ import annotations

from collections.abc import Sequence

from fangxian.edge.adapter import (
    DeviceCall,
    DeviceIdentity,
    DeviceRequest,
    DeviceResponse,
    IdentifierKind,
    MalformedRequest,
    NativeEvent,
    ParsedRequest,
    RefusalReason,
    Verdict,
)
from fangxian.edge.adapters._wire import parse_ampersand_form

OPEN = "0000"
#: answer codes: anything but 0000 keeps the turnstile shut; the reader may show the code
CODES = {
    "DENY": "0001",
    "RECHECK": "0002",
    RefusalReason.UNKNOWN_DEVICE: "0003",
    RefusalReason.UNAUTHENTICATED: "0003",
    RefusalReason.MALFORMED: "0004",
    RefusalReason.RATE_LIMITED: "0005",
    RefusalReason.UNAVAILABLE: "0006",
}


class QrReaderAdapter:
    vendor: str = "qr"
    path_prefixes: tuple[str, ...] = ("/edge/qr/",)

    def parse(self, request: DeviceRequest) -> ParsedRequest:
        form = parse_ampersand_form(request.body)
        if not form and request.query:  # GET mode: stripped as the body's fields are
            form = {k.lower(): v.strip() for k, v in request.query.items()}
        if "vgdecoderesult" not in form:
            raise MalformedRequest("missing_field", "the form has no vgdecoderesult field")
        identity = DeviceIdentity(device_number=form.get("devicenumber") or None)
        code = form["vgdecoderesult"]
        event = NativeEvent(
            event_serial="",
            method="QR",
            identifier=code or None,
            identifier_kind=IdentifierKind.QR,
        )
        return ParsedRequest(identity, (event,), delivery="response")

    def answer(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> DeviceResponse:
        if not verdicts:
            return DeviceResponse.text(f"code={OPEN}")
        verdict = verdicts[0]
        code = OPEN if verdict.opens else CODES[verdict.decision]
        return DeviceResponse.text(f"code={code}")

    def callbacks(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> Sequence[DeviceCall]:
        return ()

    def refuse(self, reason: RefusalReason) -> DeviceResponse:
        return DeviceResponse.text(f"code={CODES[reason]}")
