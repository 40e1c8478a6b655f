"""What the edge adapter harnesses check on every input (imported by ``fuzz_edge_*.py``).

An adapter may raise :class:`~fangxian.edge.adapter.MalformedRequest` and nothing else. On a
request it parsed, the events must be what the service can use (a serial of at most 200
characters — empty only when the device numbers nothing, and the service then gives the event
its own id —, a finite temperature, a non-blank identifier and a kind with every identifier; a
kind without an identifier is harmless: the service reads it as "nobody identified"), and
``answer``, ``callbacks`` and every ``refuse`` must render without raising. A refusal is not a
200, except for families that refuse in the body of a 200 (QR readers read ``code=…`` only;
their harness checks the code).
"""

from __future__ import annotations

import math

from fangxian.edge.adapter import (
    DeviceAdapter,
    DeviceRequest,
    DeviceResponse,
    MalformedRequest,
    RefusalReason,
    Verdict,
)

DECISIONS = ("ALLOW", "WARN", "RECHECK", "DENY")


def exercise(
    adapter: DeviceAdapter, request: DeviceRequest, *, refuses_in_body: bool = False
) -> DeviceResponse | None:
    """Parse, check the events, answer; ``None`` when the request was refused as malformed."""
    for reason in RefusalReason:
        refusal = adapter.refuse(reason)
        assert refuses_in_body or refusal.status != 200, reason
    try:
        parsed = adapter.parse(request)
    except MalformedRequest as err:
        assert err.reason and err.detail
        return None
    for event in parsed.events:
        assert isinstance(event.event_serial, str) and len(event.event_serial) <= 200
        if event.identifier is not None:
            assert event.identifier_kind is not None and event.identifier.strip()
        assert event.temperature_c is None or math.isfinite(event.temperature_c)
        assert event.event_time_ms is None or isinstance(event.event_time_ms, int)
        repr(event)
    verdicts = [
        Verdict(e.event_serial, DECISIONS[i % len(DECISIONS)]) for i, e in enumerate(parsed.events)
    ]
    given = verdicts if parsed.delivery == "response" else []
    response = adapter.answer(parsed, given)
    assert response.status == 200
    adapter.callbacks(parsed, given)
    return response
