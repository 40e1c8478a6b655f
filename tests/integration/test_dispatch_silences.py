"""Silences end to end (issue 22 item 1), on the real Kafka broker: a silence created with
``fangxian silence add`` stops the fake WeCom robot's message for a matching alert — SILENCED
in ``alert.actions`` instead — while a non-matching alert is paged (the control), and once the
silence has ended by itself a new matching alert is paged again. The console's endpoint writes
the same records under the same role rule; the daily report counts what was muted (chdb and
the 18.16 server)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from fangxian.console.app import ConsoleDeps, build_app
from fangxian.console.auth import Credentials, SessionSigner
from fangxian.console.history import History
from fangxian.console.live import LiveState
from fangxian.console.roster import StaffDirectory
from fangxian.console.scope import StaffEntry
from fangxian.console.silences import SilenceFeed
from fangxian.core.settings import Settings
from infra.fake_bots import FakeBots
from sinks import migrate, open_writer
from sinks.readback import read_contract_rows
from sinks.reports.on_duty import on_duty_figures
from sinks.reports.sqltime import local_day_bounds
from streams.dispatch.stage import DispatcherStage
from tests.integration.dispatch_harness import (
    COMMUNITY,
    AlertProducer,
    dispatch_settings,
    env_of,
    fever_alert,
    load_example_roster,
    read_actions,
)

SILENCE_S = 10
ZONE = "Asia/Shanghai"


def silence_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``fangxian silence ARGS`` as an operator runs it (settings from the environment)."""
    return subprocess.run(
        [sys.executable, "-m", "fangxian.cli", "silence", *args],
        env=env_of(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def until(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_a_silence_from_the_cli_stops_the_page_until_it_ends(
    topics: Settings, tmp_path: Path, clickhouse_url: str
) -> None:
    writer = open_writer(clickhouse_url)  # where the CLI writes its audit rows
    try:
        migrate(writer, retention_days=10_000)
    finally:
        writer.close()

    async def main() -> dict[str, Any]:
        bots = await FakeBots().start()
        settings = dispatch_settings(topics, tmp_path, bots, clickhouse_url=clickhouse_url)
        await asyncio.to_thread(load_example_roster, settings)
        stage = DispatcherStage(settings)
        await stage.start()
        task = asyncio.create_task(stage.run())
        producer = AlertProducer(settings)

        def wecom_with(text: str) -> list[Any]:
            return [r for r in bots.of_kind("wecom") if text in r.payload["text"]["content"]]

        try:
            await asyncio.wait_for(stage.ready.wait(), 60)
            added = await asyncio.to_thread(
                silence_cli,
                settings,
                "add",
                "--as",
                "st-office",
                "--device",
                "gun-east-03",
                "--type",
                "FEVER_CONFIRMED",
                "--for",
                f"{SILENCE_S}s",
                "--reason",
                "东门测温枪送修 thermometer away for repair",
            )
            assert added.returncode == 0, added.stderr
            silence_id = added.stdout.strip().splitlines()[-1]
            book = stage.silences.silences
            await until(lambda: silence_id in book, 10, "the dispatcher to read the silence")
            now = int(time.time() * 1000)
            muted = fever_alert(now, message_zh="静默期间 during the silence")
            control = fever_alert(now, device_id="gun-east-04", message_zh="对照 control")
            await asyncio.to_thread(producer.send, muted)
            await asyncio.to_thread(producer.send, control)
            await until(lambda: wecom_with("对照"), 15, "the control's WeCom message")
            # meanwhile: a gate guard may not silence; the list shows the silence; a second
            # silence is created and expired at once (the CLI's other two commands)
            refused, listed, second = await asyncio.gather(
                asyncio.to_thread(
                    silence_cli, settings, "add", "--as", "st-east-day", "--gate", "east-gate",
                    "--for", "1h", "--reason", "门岗无权 a guard may not",
                ),
                asyncio.to_thread(silence_cli, settings, "list", "--json"),
                asyncio.to_thread(
                    silence_cli, settings, "add", "--as", "st-street", "--gate", "west-gate",
                    "--for", "1h", "--reason", "西门施工 works at the west gate",
                ),
            )  # fmt: skip
            assert second.returncode == 0, second.stderr
            second_id = second.stdout.strip().splitlines()[-1]
            expired = await asyncio.to_thread(
                silence_cli, settings, "expire", second_id, "--as", "st-office"
            )
            await until(
                lambda: second_id in book and book[second_id].ends_at <= time.time() * 1000,
                10,
                "the dispatcher to read the expiry",
            )
            ends_at = book[silence_id].ends_at
            await until(lambda: time.time() * 1000 >= ends_at, SILENCE_S + 5, "the end")
            after = fever_alert(int(time.time() * 1000), message_zh="静默结束后 after the silence")
            await asyncio.to_thread(producer.send, after)
            await until(lambda: wecom_with("静默结束后"), 15, "the page after the silence")
            return {
                "settings": settings,
                "silence_id": silence_id,
                "muted": muted,
                "control": control,
                "after": after,
                "muted_pages": wecom_with("静默期间"),
                "muted_metric": stage.registry.get_sample_value(
                    "fangxian_dispatch_muted_total", {"by": "silence"}
                ),
                "refused": refused,
                "listed": listed,
                "expired": expired,
                "second_id": second_id,
            }
        finally:
            producer.close()
            await stage.stop()
            task.cancel()
            await bots.stop()

    out = asyncio.run(main())
    assert out["muted_pages"] == [], "no WeCom message for the silenced alert"
    assert out["muted_metric"] == 1, "counted for Prometheus"
    actions = read_actions(out["settings"])
    kinds = {
        name: [a["action"] for a in actions if a["alert_id"] == out[name]["alert_id"]]
        for name in ("muted", "control", "after")
    }
    assert kinds["muted"] == ["SILENCED"], "recorded, never routed or sent"
    assert kinds["control"][:3] == ["ROUTED", "SENDING", "NOTIFIED"]
    assert kinds["after"][:3] == ["ROUTED", "SENDING", "NOTIFIED"], "paged again after the end"
    (record,) = [a for a in actions if a["alert_id"] == out["muted"]["alert_id"]]
    assert record["staff_ids"] == ["st-office"]
    assert record["detail"]["muted_by"] == "silence"
    assert record["detail"]["silence_id"] == out["silence_id"]
    assert "东门测温枪送修" in record["detail"]["reason"]
    # the CLI's role rule, list and expire
    assert out["refused"].returncode == 1 and "GATE_GUARD" in out["refused"].stderr
    listed = {s["silence_id"]: s for s in json.loads(out["listed"].stdout)}
    assert listed[out["silence_id"]]["matchers"] == "device=gun-east-03 type=FEVER_CONFIRMED"
    assert listed[out["silence_id"]]["via"] == "cli"
    assert out["expired"].returncode == 0, out["expired"].stderr
    assert "silence expired" in out["expired"].stdout
    # every CLI silence action is in the audit log before it is done, a refusal too
    reader = open_writer(clickhouse_url)
    try:
        rows = read_contract_rows(reader, "audit_log", final=False)
    finally:
        reader.close()
    audited = sorted(
        (r["actor"], r["details"]["outcome"], r["details"].get("what", ""), r["action"])
        for r in rows
    )
    assert audited == [
        ("st-east-day", "denied", "", "alert_silence"),
        ("st-office", "ok", "create", "alert_silence"),
        ("st-office", "ok", "expire", "alert_silence"),
        ("st-street", "ok", "create", "alert_silence"),
    ]
    assert all(r["origin"].startswith("cli@") for r in rows)
    (created,) = [r for r in rows if r["details"].get("silence_id") == out["silence_id"]]
    assert created["details"]["matchers"] == "device=gun-east-03 type=FEVER_CONFIRMED"


# -- the console's endpoint --------------------------------------------------------------------
WEST = "91350100M000200Y4X"  # same county 350100 as COMMUNITY
NORTH = "91350200M000300Y21"  # county 350200
PASSWORD = "a long enough password"
STAFF = {
    "office": StaffEntry("office", COMMUNITY, "社区 张主任", "COMMUNITY_STAFF"),
    "guard": StaffEntry("guard", COMMUNITY, "东门 李师傅", "GATE_GUARD"),
    "officer": StaffEntry("officer", "11350100MB0000000X", "街道值班室", "STREET_OFFICE"),
}


@pytest.fixture
def console(
    topics: Settings, chdb_url: str, tmp_path: Path
) -> Iterator[tuple[TestClient, Settings]]:
    writer = open_writer(chdb_url)
    migrate(writer)
    creds = Credentials(tmp_path / "creds.json")
    for staff_id in STAFF:
        creds.set_password(staff_id, PASSWORD, n=2**10)
    settings = topics.replace(console_secret="test-only-console-secret")
    feed = SilenceFeed(settings)

    async def silences(stop: asyncio.Event) -> None:
        await feed.start()
        try:
            await feed.follow(stop)
        finally:
            await feed.stop()

    deps = ConsoleDeps(
        settings=settings,
        signer=SessionSigner(settings.console_secret),
        credentials=creds,
        directory=StaffDirectory(STAFF),
        state=LiveState(),
        history=History(writer, settings.default_timezone),
        silences=feed,
        background=[silences],
    )
    try:
        with TestClient(build_app(deps)) as client:
            deadline = time.monotonic() + 30
            while not feed.loaded.is_set():
                assert time.monotonic() < deadline, "the console did not read alert.silences"
                time.sleep(0.05)
            yield client, settings
    finally:
        writer.close()


def sign_in(client: TestClient, staff_id: str) -> str:
    """Signs in; returns the session's CSRF token."""
    client.cookies.clear()
    form = client.get("/login")
    token = form.text.split('name="csrf" value="')[1].split('"')[0]
    client.post(
        "/login",
        data={"csrf": token, "staff_id": staff_id, "password": PASSWORD},
        follow_redirects=False,
    )
    page = client.get("/silences")
    return page.text.split('name="csrf-token" content="')[1].split('"')[0]


def create(client: TestClient, csrf: str, community: str) -> Any:
    return client.post(
        "/api/silences",
        headers={"X-CSRF-Token": csrf},
        json={
            "community": community,
            "gates": "east-gate",
            "types": ["FEVER_RECHECK_MISSED"],
            "duration": "2h",
            "reason": "东门测温枪送修",
        },
    )


@pytest.mark.parametrize(
    ("staff_id", "community", "status"),
    [
        pytest.param("office", COMMUNITY, 201, id="community staff, own community"),
        pytest.param("guard", COMMUNITY, 403, id="a gate guard may not silence"),
        pytest.param("office", WEST, 403, id="community staff, the neighbour's community"),
        pytest.param("officer", WEST, 201, id="the street office, a community of its county"),
        pytest.param("officer", NORTH, 403, id="the street office, another county"),
    ],
)
def test_who_may_silence_from_the_console(
    console: tuple[TestClient, Settings], staff_id: str, community: str, status: int
) -> None:
    client, _ = console
    csrf = sign_in(client, staff_id)
    done = create(client, csrf, community)
    assert done.status_code == status, done.text
    if status == 201:
        assert done.json()["silence"]["created_by"] == staff_id


def test_a_console_silence_reaches_kafka_shows_and_is_expired(
    console: tuple[TestClient, Settings],
) -> None:
    client, settings = console
    csrf = sign_in(client, "office")
    no_csrf = client.post("/api/silences", json={"community": COMMUNITY, "gates": "g"})
    assert no_csrf.status_code == 403, "CSRF checked first"
    bad = client.post(
        "/api/silences",
        headers={"X-CSRF-Token": csrf},
        json={"community": COMMUNITY, "duration": "2h", "reason": "x"},
    )
    assert bad.status_code == 400 and "whole community" in bad.json()["error"]
    silence = create(client, csrf, COMMUNITY).json()["silence"]
    page = client.get("/silences").text
    assert silence["silence_id"] in page and "东门测温枪送修" in page and "silence-form" in page
    # the record is in Kafka: the CLI (another process) lists it
    listed = silence_cli(settings, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (found,) = [s for s in json.loads(listed.stdout) if s["silence_id"] == silence["silence_id"]]
    assert (found["via"], found["created_by"], found["state"]) == ("console", "office", "active")
    # a guard sees it but gets no form and may not expire it
    guard_csrf = sign_in(client, "guard")
    assert "silence-form" not in client.get("/silences").text
    url = f"/api/silences/{silence['silence_id']}/expire"
    assert client.post(url, headers={"X-CSRF-Token": guard_csrf}).status_code == 403
    # the street office of the county may
    officer_csrf = sign_in(client, "officer")
    ended = client.post(url, headers={"X-CSRF-Token": officer_csrf})
    assert ended.status_code == 200 and ended.json()["silence"]["state"] == "expired"
    assert client.post(url, headers={"X-CSRF-Token": officer_csrf}).status_code == 409
    after = json.loads(silence_cli(settings, "list", "--json", "--all").stdout)
    (gone,) = [s for s in after if s["silence_id"] == silence["silence_id"]]
    assert (gone["state"], gone["updated_by"]) == ("expired", "officer")


# -- the daily report --------------------------------------------------------------------------
@pytest.fixture(params=["chdb", "server"])
def report_writer(request: pytest.FixtureRequest) -> Any:
    url = request.getfixturevalue("chdb_url" if request.param == "chdb" else "clickhouse_url")
    conn = open_writer(url)
    migrate(conn)
    yield conn
    conn.close()


def _action(alert_id: str, action: str, at: int, **detail: str) -> dict[str, Any]:
    return {
        "action_id": str(uuid.uuid4()),
        "alert_id": alert_id,
        "community_id": COMMUNITY,
        "action": action,
        "alert_type": "FEVER_RECHECK_MISSED",
        "severity": "WARNING",
        "gate_id": "east-gate",
        "level": 0,
        "staff_ids": [],
        "channel": None,
        "delivery_id": None,
        "attempt": 0,
        "group_count": 1,
        "detail": {"partition": "0", **detail},
        "alert_event_time": at,
        "created_at": at,
    }


def test_muted_alerts_are_counted_in_the_daily_report(report_writer: Any) -> None:
    day = dt.datetime.now(ZoneInfo(ZONE)).date()
    start, end = local_day_bounds(day, ZONE)
    at = start * 1000 + 3_600_000
    rows = [
        _action("routed", "ROUTED", at),
        _action("s1", "SILENCED", at, muted_by="silence", silence_id="x"),
        _action("s2", "SILENCED", at, muted_by="silence", silence_id="x"),
        _action("i1", "SILENCED", at, muted_by="inhibition", inhibited_by="dev"),
        _action("p1", "SILENCED", at, muted_by="policy"),
        _action("routed", "SILENCED", at + 1, muted_by="silence", while_open="true"),
        _action("yesterday", "SILENCED", at - 86_400_000, muted_by="silence"),
    ]
    rows.append(dict(rows[1], action_id=str(uuid.uuid4())))  # a re-read record: counted once
    report_writer.write("alert_actions", rows)
    (figures,) = on_duty_figures(
        report_writer, "community_id = %(code)s", {"code": COMMUNITY}, start, end
    )
    assert (figures.alerts_routed, figures.silenced, figures.inhibited) == (1, 3, 1)
