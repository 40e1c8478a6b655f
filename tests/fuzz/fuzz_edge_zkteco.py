"""Coverage-guided fuzzing of the ZKTeco PUSH adapter (atheris).

Input layout: the first byte picks the request (handshake, ATTLOG, rtlog, another table, the
command poll, a command result, PUSH 3 registry), the rest is the body. Allowed out of
``parse``: ``MalformedRequest``; every parsed request must answer in plain text, never JSON.

    python tests/fuzz/fuzz_edge_zkteco.py tests/fuzz/corpus/edge_zkteco -runs=100000 -seed=1
"""

from __future__ import annotations

import json
import sys

import atheris

with atheris.instrument_imports(include=["fangxian.edge"]):
    from fangxian.edge.adapter import DeviceRequest
    from fangxian.edge.adapters.zkteco import ZktecoAdapter

from edge_checks import exercise

ADAPTER = ZktecoAdapter()
SN = "CQZ7231260012"
REQUESTS = (
    ("GET", "/iclock/cdata", {"options": "all", "pushver": "2.4.1"}),
    ("POST", "/iclock/cdata", {"table": "ATTLOG", "Stamp": "1"}),
    ("POST", "/iclock/cdata", {"table": "rtlog"}),
    ("POST", "/iclock/cdata", {"table": "OPERLOG"}),
    ("GET", "/iclock/getrequest", {}),
    ("POST", "/iclock/devicecmd", {}),
    ("POST", "/iclock/registry", {}),
    ("POST", "/iclock/cdata.aspx", {"table": "ATTLOG"}),
)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    method, path, query = REQUESTS[data[0] % len(REQUESTS)]
    response = exercise(
        ADAPTER, DeviceRequest(method, path, {"SN": SN, **query}, {}, data[1:], "192.0.2.20")
    )
    if response is not None:
        try:
            json.loads(response.body)
        except ValueError:
            return
        raise AssertionError("a ZKTeco answer parsed as JSON: the terminal would resend")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
