"""Coverage-guided fuzzing of the plate-camera (IVS ``AlarmInfoPlate``) adapter (atheris).

Input layout: the first byte picks the Content-Type (JSON, none, text), the rest is the body —
often cut short, as some firmware sends it. Allowed out of ``parse``: ``MalformedRequest``;
every parsed request must answer a ``Response_AlarmInfoPlate`` JSON whose ``info`` opens the
barrier exactly when the verdict lets the vehicle pass.

    python tests/fuzz/fuzz_edge_plate.py tests/fuzz/corpus/edge_plate -runs=100000 -seed=1
"""

from __future__ import annotations

import json
import sys

import atheris

with atheris.instrument_imports(include=["fangxian.edge"]):
    from fangxian.edge.adapter import DeviceRequest
    from fangxian.edge.adapters.plate import PlateCameraAdapter

from edge_checks import DECISIONS, exercise

ADAPTER = PlateCameraAdapter()
CONTENT_TYPES = ("application/json", None, "text/plain", "application/x-www-form-urlencoded")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    content_type = CONTENT_TYPES[data[0] % len(CONTENT_TYPES)]
    request = DeviceRequest(
        "POST",
        "/edge/plate/",
        {},
        {"content-type": content_type} if content_type else {},
        data[1:],
        "192.0.2.40",
    )
    response = exercise(ADAPTER, request)
    if response is None:
        return
    answer = json.loads(response.body)["Response_AlarmInfoPlate"]
    parsed = ADAPTER.parse(request)
    if parsed.delivery == "response" and parsed.events:
        # exercise() gave the first event the first decision, ALLOW: the barrier opens
        assert DECISIONS[0] == "ALLOW" and answer["info"] == "ok"
    else:
        assert answer["info"] == "ok"


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
