"""The console's figures for issue 20, on chdb and on the 18.16 server: the occupancy figure is
the persons inside (carried across midnight, never below zero, refused passes and vehicles
left out), and an early-warning alert re-emitted with the same id shows once, as its latest
version."""

from __future__ import annotations

from typing import Any

import pytest

from fangxian.console.history import History, local_midnight_s
from sinks import Connection, migrate, open_writer
from tests.integration.pipeline_harness import fresh_example
from tests.integration.test_console_history import EAST, TZ, decision_for, scan

MIN_MS = 60_000


@pytest.fixture(params=["chdb", "server"])
def writer(request: pytest.FixtureRequest) -> Any:
    url = request.getfixturevalue("chdb_url" if request.param == "chdb" else "clickhouse_url")
    conn = open_writer(url)
    migrate(conn)
    yield conn
    conn.close()


def test_occupancy_is_the_persons_inside_carried_across_midnight(writer: Connection) -> None:
    midnight_ms = local_midnight_s(TZ) * 1000
    passes = [
        # two days ago: two exits of people inside before counting began (stays at zero)
        (scan("OUT"), "ALLOW", -(36 * 60) * MIN_MS),
        (scan("OUT"), "ALLOW", -(36 * 60 - 1) * MIN_MS),
        # yesterday evening: three in
        (scan("IN"), "ALLOW", -60 * MIN_MS),
        (scan("IN"), "WARN", -59 * MIN_MS),
        (scan("IN"), "ALLOW", -58 * MIN_MS),
        # after midnight: one out, one held for a recheck at the gate, one refused, a car
        (scan("OUT"), "ALLOW", 30 * MIN_MS),
        (scan("IN"), "RECHECK", 31 * MIN_MS),
        (scan("IN"), "DENY", 32 * MIN_MS),
        (scan("IN", "VEHICLE"), "ALLOW", 33 * MIN_MS),
    ]
    rows = []
    for row, _, offset in passes:
        row["event_time"] = midnight_ms + offset
        rows.append(row)
    writer.write("gate_scans", rows)
    writer.write("gate_decisions", [decision_for(s, d) for s, d, _ in passes])
    occupancy = History(writer, TZ).occupancy([EAST], local_midnight_s(TZ))
    # since midnight: 1 in (the recheck), 1 out; inside: 3 - 1 + 1 (the 2 early exits clamp)
    assert occupancy[EAST] == {"in": 1, "out": 1, "now": 3}


def test_an_alert_re_emitted_with_the_same_id_shows_once_as_its_latest_version(
    writer: Connection,
) -> None:
    first = fresh_example("Alert", alert_type="CLUSTER_SUSPECTED", subject_id=None, gate_id=None)
    first["created_at"] = first["event_time"]
    grown = {
        **first,
        "message_zh": "【聚集性疫情预警】4 人",
        "details": {"cases": "4"},
        "created_at": first["event_time"] + 3_600_000,
    }
    writer.write("alerts", [first])
    writer.write("alerts", [grown])
    history = History(writer, TZ)
    start = first["event_time"] // 1000 - 60
    (shown,) = history.alerts_since([EAST], start)
    assert shown["message_zh"] == grown["message_zh"] and shown["details"] == {"cases": "4"}
    one = history.alert(first["alert_id"])
    assert one is not None and one["details"] == {"cases": "4"}
