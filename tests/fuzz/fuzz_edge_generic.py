"""Coverage-guided fuzzing of the generic JSON API adapter (atheris).

Input layout: the first byte picks the route (``POST /edge/api/v1/scans``, with a trailing
slash, with ``device_id`` in the query, a GET, another path), the rest is the body. Allowed out
of ``parse``: ``MalformedRequest``; a parsed request must answer one result per scan, in order.

    python tests/fuzz/fuzz_edge_generic.py tests/fuzz/corpus/edge_generic -runs=100000 -seed=1
"""

from __future__ import annotations

import json
import sys

import atheris

with atheris.instrument_imports(include=["fangxian.edge"]):
    from fangxian.edge.adapter import DeviceRequest
    from fangxian.edge.adapters.generic import MAX_SCANS, GenericJsonAdapter

from edge_checks import exercise

ADAPTER = GenericJsonAdapter()
ROUTES = (
    ("POST", "/edge/api/v1/scans", {}),
    ("POST", "/edge/api/v1/scans/", {}),
    ("POST", "/edge/api/v1/scans", {"device_id": "GEN-0001"}),
    ("GET", "/edge/api/v1/scans", {}),
    ("POST", "/edge/api/v1/other", {}),
)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    method, path, query = ROUTES[data[0] % len(ROUTES)]
    request = DeviceRequest(
        method, path, query, {"content-type": "application/json"}, data[1:], "192.0.2.60"
    )
    response = exercise(ADAPTER, request)
    if response is None:
        return
    serials = [e.event_serial for e in ADAPTER.parse(request).events]
    results = json.loads(response.body)["results"]
    assert 1 <= len(serials) <= MAX_SCANS
    assert [r["event_serial"] for r in results] == serials


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
