"""Coverage-guided fuzzing of the Hikvision ISAPI adapter (atheris).

Input layout: the first byte picks the Content-Type (multipart with the fake terminal's
boundary, multipart without a boundary parameter, JSON, none), the rest is the push body.
Allowed out of ``parse``: ``MalformedRequest``; every parsed push must answer 200 and every
remote-verification callback must be a ``RemoteCheck`` JSON the terminal can show.

    python tests/fuzz/fuzz_edge_hikvision.py tests/fuzz/corpus/edge_hikvision -runs=100000 -seed=1
"""

from __future__ import annotations

import json
import sys

import atheris

with atheris.instrument_imports(include=["fangxian.edge"]):
    from fangxian.edge.adapter import DeviceRequest, Verdict
    from fangxian.edge.adapters.hikvision import INFO_CHARS, HikvisionAdapter

from edge_checks import exercise

ADAPTER = HikvisionAdapter()
CONTENT_TYPES = (
    "multipart/form-data; boundary=MIME_boundary",
    'multipart/form-data; boundary="MIME_boundary"',
    "multipart/form-data",
    "application/json",
    None,
    "text/plain",
)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    content_type = CONTENT_TYPES[data[0] % len(CONTENT_TYPES)]
    request = DeviceRequest(
        "POST",
        "/edge/hikvision/events",
        {},
        {"content-type": content_type} if content_type else {},
        data[1:],
        "192.0.2.30",
    )
    if exercise(ADAPTER, request) is None:
        return
    parsed = ADAPTER.parse(request)
    if parsed.delivery != "callback":
        return
    verdicts = [Verdict(e.event_serial, "DENY", message_zh="体温异常" * 20) for e in parsed.events]
    for call in ADAPTER.callbacks(parsed, verdicts):
        check = json.loads(call.body)["RemoteCheck"]
        assert check["checkResult"] == "failed" and len(check["info"]) <= INFO_CHARS


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
