"""Coverage-guided fuzzing of the QR-reader adapter (atheris).

Input layout: the first byte picks where the form is (the body, with or without a form
Content-Type, or the query string), the rest is the form text (``vgdecoderesult=…&&…``).
Allowed out of ``parse``: ``MalformedRequest``; every answer, refusal included, must be
``code=`` and four digits, as the reader reads it.

    python tests/fuzz/fuzz_edge_qr.py tests/fuzz/corpus/edge_qr -runs=100000 -seed=1
"""

from __future__ import annotations

import re
import sys
from urllib.parse import parse_qsl

import atheris

with atheris.instrument_imports(include=["fangxian.edge"]):
    from fangxian.edge.adapter import DeviceRequest, RefusalReason
    from fangxian.edge.adapters.qr import QrReaderAdapter

from edge_checks import exercise

ADAPTER = QrReaderAdapter()
ANSWER = re.compile(rb"code=[0-9]{4}")
CONTENT_TYPES = ("application/x-www-form-urlencoded", None, "text/plain")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    in_query = data[0] & 0x80
    content_type = CONTENT_TYPES[data[0] % len(CONTENT_TYPES)]
    query: dict[str, str] = {}
    body = data[1:]
    if in_query:  # a reader in GET mode: the fields arrive as the query string
        query = dict(reversed(parse_qsl(body.decode("latin-1"), keep_blank_values=True)))
        body = b""
    request = DeviceRequest(
        "POST",
        "/edge/qr/",
        query,
        {"content-type": content_type} if content_type else {},
        body,
        "192.0.2.50",
    )
    response = exercise(ADAPTER, request, refuses_in_body=True)
    if response is not None:
        assert ANSWER.fullmatch(response.body), "the reader reads code=NNNN only"
    for reason in RefusalReason:
        refusal = ADAPTER.refuse(reason).body
        assert ANSWER.fullmatch(refusal) and refusal != b"code=0000", reason


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
