"""Fallback answers go through the outbox's group commit: a burst of answers (and of the forgets
when the core's decisions arrive) costs one transaction — one fsync — per group, not one each;
an answer is on disk when its future is done, before the device is told; queue order holds (a
forget queued after a remember of the same event wins); reopening finds what was remembered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from fangxian.core.settings import Settings
from fangxian.edge.outbox import FallbackAnswer, Outbox, OutRow
from fangxian.edge.register import DeviceEntry, Register
from fangxian.edge.service import EdgeConfig, EdgeService

C = "91350100M000100Y43"
T0 = 1_796_600_000_000  # 2026-12


def _answer(i: int, decision: str = "DENY") -> FallbackAnswer:
    return FallbackAnswer(
        f"ev-{i}", decision, ("UNKNOWN_SUBJECT",), C, "east", "qr-1", f"s-{i}", T0 + i, T0 + 2_000
    )


def _row(eid: str) -> OutRow:
    return OutRow(eid, "GateScan", "gate.scans", b"k", b"v" + eid.encode())


def _on_disk(path: Path) -> set[str]:
    """What another connection (a process after a crash) sees."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {r[0] for r in db.execute("SELECT event_id FROM fallbacks")}


@pytest.mark.parametrize(
    ("remember", "forget", "appends", "commits", "left"),
    [
        pytest.param(50, 0, 0, 1, 50, id="50-concurrent-answers-one-commit"),
        pytest.param(1, 0, 0, 1, 1, id="one-answer"),
        pytest.param(50, 50, 0, 1, 0, id="answers-then-their-forgets-in-one-group"),
        pytest.param(50, 20, 0, 1, 30, id="some-forgotten"),
        pytest.param(30, 10, 30, 2, 20, id="appends-then-answers-one-group-each"),
        pytest.param(0, 0, 40, 1, 0, id="appends-alone-as-before"),
    ],
)
def test_a_burst_is_one_group_commit(
    tmp_path: Path, remember: int, forget: int, appends: int, commits: int, left: int
) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)

    async def one(i: int) -> None:  # a request: its answer on disk before it returns
        if i < appends:
            await box.append([_row(f"row-{i}")])
        if i < remember:
            await box.remember((_answer(i),))
            assert f"ev-{i}" in _on_disk(path)

    async def burst() -> None:
        await asyncio.gather(*(one(i) for i in range(max(remember, appends))))
        box.forget([f"ev-{i}" for i in range(forget)])  # the decisions arrive: not awaited
        await box.remember(())  # queue order: done once everything queued before is on disk

    before = box.commits
    asyncio.run(burst())
    assert box.commits - before == commits + 1  # + the barrier's own (empty) transaction
    box.close()
    again = Outbox(path)
    assert set(again.fallbacks()) == {f"ev-{i}" for i in range(forget, remember)}
    assert len(again.fallbacks()) == left
    assert len(again.pending()) == appends
    again.close()


def test_one_by_one_each_answer_is_its_own_commit(tmp_path: Path) -> None:
    """The synchronous path (tools, tests) keeps one transaction per call: the old cost."""
    box = Outbox(tmp_path / "o.sqlite")
    before = box.commits
    for i in range(10):
        box.remember_fallback(_answer(i))
    box.forget_fallback("ev-0")
    assert box.commits - before == 11
    assert len(box.fallbacks()) == 9
    box.close()


def test_answers_arriving_while_a_commit_runs_share_the_next(tmp_path: Path) -> None:
    """Requests in waves: each wave waits for at most one commit in progress, then shares one."""
    path = tmp_path / "o.sqlite"
    box = Outbox(path)

    async def waves() -> None:
        first = box.remember([_answer(i) for i in range(5)])
        await asyncio.sleep(0)  # the flusher has taken the first group
        rest = [box.remember((_answer(i),)) for i in range(5, 50)]
        await asyncio.gather(first, *rest)

    before = box.commits
    asyncio.run(waves())
    assert box.commits - before <= 2
    assert _on_disk(path) == {f"ev-{i}" for i in range(50)}
    box.close()


def test_a_failed_commit_fails_the_waiting_answers_and_only_logs_the_forgets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path / "o.sqlite")

    async def broken() -> None:
        box.forget(["ev-1"])
        waiting = box.remember((_answer(2),))
        box._db.close()  # the disk is gone
        with pytest.raises(sqlite3.ProgrammingError):
            await waiting

    with caplog.at_level(logging.WARNING, logger="fangxian.edge.outbox"):
        asyncio.run(broken())
    assert "1 fallback answers not forgotten" in caplog.text


# --- the service: answers of one round remembered together, decisions forgotten together ----


ENTRY = DeviceEntry(
    "qr-1",
    "qr",
    community_id=C,
    direction="IN",
    gate_id="east",
    device_number="R-01",
    timeout_ms=600,
)


def _service(tmp_path: Path) -> EdgeService:
    cfg = EdgeConfig(port=0, metrics_port=-1, outbox_path=str(tmp_path / "outbox.sqlite"))
    return EdgeService(Settings(pseudonym_key="edge-unit-key"), cfg, Register([ENTRY]), kafka=False)


def _scans(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"ev-{i}",
            "community_id": C,
            "gate_id": "east",
            "device_id": "qr-1",
            "subject_type": "RESIDENT",
            "subject_id": f"s-{i}",
            "direction": "IN",
            "event_time": T0 + i,
        }
        for i in range(start, start + n)
    ]


async def _late(service: EdgeService, scans: Sequence[dict[str, Any]]) -> list[Any]:
    """A round whose core decision is late: every scan answered from the fallback."""
    events = [types.SimpleNamespace(event_serial=s["event_id"]) for s in scans]
    futures = [service._wait_for(s["event_id"]) for s in scans]
    return await service._verdicts(ENTRY, scans, events, futures, time.perf_counter())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rounds", "per_round", "agree", "max_commits"),
    [
        pytest.param(1, 50, 50, 1, id="one-request-50-scans"),
        # concurrent requests: at most the group in progress plus one for all the others
        pytest.param(50, 1, 50, 2, id="50-concurrent-requests"),
        pytest.param(10, 5, 30, 2, id="10-requests-of-5"),
    ],
)
def test_service_remembers_a_round_in_one_commit_and_forgets_in_one(
    tmp_path: Path, rounds: int, per_round: int, agree: int, max_commits: int
) -> None:
    service = _service(tmp_path)
    path = Path(service.config.outbox_path)
    n = rounds * per_round

    async def main() -> None:
        box = service.outbox
        before = box.commits
        got = await asyncio.gather(
            *(_late(service, _scans(per_round, r * per_round)) for r in range(rounds))
        )
        assert all(v.source == "edge-fallback" for vs in got for v in vs)
        assert _on_disk(path) == {f"ev-{i}" for i in range(n)}  # durable before answered
        assert box.commits - before <= max_commits
        # the core's decisions arrive, agreeing: forgotten with the next group, not awaited
        before = box.commits
        for i in range(agree):
            await service._on_decision({"event_id": f"ev-{i}", "decision": "DENY", "reasons": []})
        assert box.commits == before  # the follower did not wait for a commit per decision
        await box.remember(())
        assert box.commits - before == 1
        assert _on_disk(path) == {f"ev-{i}" for i in range(agree, n)}

    asyncio.run(main())
    service.outbox.close()
    again = _service(tmp_path)
    assert set(again._fallbacks) == {f"ev-{i}" for i in range(agree, n)}  # after a restart
    again.outbox.close()


def test_service_disagreement_alert_and_forget_in_one_commit(tmp_path: Path) -> None:
    service = _service(tmp_path)
    path = Path(service.config.outbox_path)

    async def main() -> None:
        await _late(service, _scans(2))  # both refused from the fallback (unknown subject)
        before = service.outbox.commits
        await service._on_decision({"event_id": "ev-0", "decision": "ALLOW", "reasons": []})
        assert service.outbox.commits - before == 1
        assert _on_disk(path) == {"ev-1"}
        alerts = [p for p in service.outbox.pending() if p.record == "Alert"]
        assert len(alerts) == 1

    asyncio.run(main())
    service.outbox.close()


@pytest.mark.parametrize(
    ("connected", "oldest_s", "kafka"),
    [
        pytest.param(True, 0.0, True, id="connected, nothing waiting"),
        pytest.param(True, 29.0, True, id="a backlog younger than the limit"),
        pytest.param(True, 31.0, False, id="connected but nothing sent for 31 s: Kafka is away"),
        pytest.param(False, 0.0, False, id="never connected"),
    ],
)
def test_healthz_says_kafka_is_away_when_accepted_records_stop_leaving(
    tmp_path: Path, connected: bool, oldest_s: float, kafka: bool
) -> None:
    """The edge's producer retries inside its client and never reports a broker outage: a
    30 s outage read kafka=true in every sample (issue 18's fault test). The age of the oldest
    accepted, unsent record is what shows it."""
    import json

    from aiohttp.test_utils import make_mocked_request

    service = _service(tmp_path)
    if connected:
        service.kafka_connected.set()
    service._outbox_age = oldest_s

    async def ask() -> dict[str, Any]:
        response = await service._handle(make_mocked_request("GET", "/healthz"))
        return json.loads(response.body)  # type: ignore[attr-defined]

    health = asyncio.run(ask())
    service.outbox.close()
    assert health["kafka"] is kafka
    assert health["outbox_oldest_s"] == oldest_s
