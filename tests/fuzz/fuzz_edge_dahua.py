"""Coverage-guided fuzzing of the Dahua adapter (atheris).

Input layout: the first byte picks the Content-Type and where the serial is (path or query),
the rest is the request body (multipart, event frames, Events JSON). Allowed out of ``parse``:
``MalformedRequest``; every parsed request must answer (``edge_checks.exercise``).

    python tests/fuzz/fuzz_edge_dahua.py tests/fuzz/corpus/edge_dahua -runs=100000 -seed=1
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["fangxian.edge"]):
    from fangxian.edge.adapter import DeviceRequest
    from fangxian.edge.adapters.dahua import DahuaAdapter

from edge_checks import exercise

ADAPTER = DahuaAdapter()
CONTENT_TYPES = (
    "multipart/mixed; boundary=myboundary",
    "multipart/form-data; boundary=myboundary",
    "multipart/x-mixed-replace; boundary=myboundary",
    "text/plain",
    "application/json",
    None,
    "multipart/mixed",
)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    content_type = CONTENT_TYPES[data[0] % len(CONTENT_TYPES)]
    in_query = data[0] & 0x80
    exercise(
        ADAPTER,
        DeviceRequest(
            "POST",
            "/edge/dahua/" if in_query else "/edge/dahua/8E0A5C1PAJ00042",
            {"SN": "8E0A5C1PAJ00042"} if in_query else {},
            {"content-type": content_type} if content_type else {},
            data[1:],
            "192.0.2.10",
        ),
    )


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
