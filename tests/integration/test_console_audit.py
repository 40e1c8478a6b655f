"""Every staff action on the console and the acknowledge links leaves its ``audit_log`` row:
who (staff id), what (action kind, the alert), from where (client address, user agent) and the
outcome — sign-ins that work and those that do not, sign-outs, password changes, acknowledge,
resolve, an action on another community's alert, a link opened and a forged link. Then who
reads the audit: a member of staff their own history only, a county officer their county's and
not another county's, a page at a time, subjects masked.

Real parts: ``fangxian console`` as its own process (uvicorn, its Kafka clients on Tansu, its
ClickHouse connection), the Debian ClickHouse 18.16 server holding alerts and the audit; the
acknowledge endpoint (``ack_app``) with its ``AuditTrail`` on the same server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestClient as AioClient
from aiohttp.test_utils import TestServer

from fangxian.console.auth import Credentials
from fangxian.core.settings import Settings, Topics
from fangxian.ingest.produce import RecordProducer
from infra.clickhouse_server import ClickHouseServer
from infra.ports import free_port
from infra.tansu import TansuBroker
from infra.topics import create_topics, topic_specs
from schemas import contract
from sinks import open_writer
from sinks.audit import AuditEntry, AuditTrail, write_audit
from sinks.migrate import migrate
from sinks.readback import read_contract_rows
from streams.dispatch.acklink import AckClaim, AckSigner
from streams.dispatch.ackweb import ack_app
from tests.integration.pipeline_harness import fresh_example

ROOT = Path(__file__).resolve().parents[2]
EAST = "91350100M000100Y43"
WEST = "91350100M000200Y4X"  # county 350100, like EAST
NORTH = "91350200M000300Y21"  # county 350200
PASSWORD = "audit-test password"
NEW_PASSWORD = "a brand new password"
UA = "Mozilla/5.0 (Linux; Android 13) fangxian-audit-test WeCom/4.1"
PHONE = "13800000011"  # typed into the staff id box: must not reach the audit log
NOTE = "已复测 36.8，联系人 张三 13900001111"  # a resolution note naming a person
TOKEN = "tok-resident-0042-abcdef"
ACK_KEY = "audit-test-ack-link-key"
STAFF = {  # staff id → (community, role)
    "guard-east": (EAST, "GATE_GUARD"),
    "guard-pw": (WEST, "GATE_GUARD"),
    "guard-busy": (EAST, "GATE_GUARD"),
    "office-east": (EAST, "COMMUNITY_STAFF"),  # may silence (fangxian/console/silences.py)
    "guard-north": (NORTH, "GATE_GUARD"),
    "officer": ("11350100MB0000000X", "STREET_OFFICE"),  # county 350100
    "officer-north": ("11350200MB0000000X", "STREET_OFFICE"),  # county 350200
}
BUSY_ROWS = 55


@dataclass
class Console:
    url: str
    database_url: str
    alerts: dict[str, dict[str, Any]]
    proc: subprocess.Popen[str]


@pytest.fixture(scope="module")
def console(
    tansu_broker: TansuBroker,
    clickhouse_server: ClickHouseServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console-audit")
    database = f"audit_{uuid.uuid4().hex[:8]}"
    admin = clickhouse_server.client()
    admin.execute(f"CREATE DATABASE {database}")
    database_url = clickhouse_server.url_for(database)
    writer = open_writer(database_url)
    migrate(writer, retention_days=10_000)
    alerts = {
        c: fresh_example("Alert", alert_id=str(uuid.uuid4()), community_id=c) for c in (EAST, NORTH)
    }
    for alert in alerts.values():
        alert["created_at"] = alert["event_time"]
    writer.write("alerts", list(alerts.values()))
    # history that is not the console's: a busy guard's older rows (pagination) and a CLI
    # contacts query about a resident (its subject is masked in the table already)
    for n in range(BUSY_ROWS):
        write_audit(
            writer,
            AuditEntry("guard-busy", "report_export", "cli@host", scope=f"community:{EAST}"),
            now_ms=1_700_000_000_000 + n,
        )
    write_audit(writer, AuditEntry("guard-east", "contacts_query", "cli@host", subject=TOKEN))
    writer.close()

    prefix = f"ca{uuid.uuid4().hex[:6]}."
    settings = Settings(kafka_bootstrap=tansu_broker.bootstrap, app_id=prefix + "console")
    settings = settings.replace(topics=settings.topics.with_prefix(prefix))
    create_topics(tansu_broker.bootstrap, topic_specs(settings), broker_supports_configs=False)
    producer = RecordProducer(settings)
    example = contract.examples("StaffMember")[0]
    for staff_id, (community, role) in STAFF.items():
        producer.send(
            "StaffMember",
            dict(
                example,
                staff_id=staff_id,
                community_id=community,
                display_name=f"测试 {staff_id}",
                role=role,
            ),
        )
    producer.close()
    credentials = Credentials(tmp / "creds.json")
    for staff_id in STAFF:
        credentials.set_password(staff_id, PASSWORD, n=2**10)

    port = free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        FANGXIAN_KAFKA_BOOTSTRAP=tansu_broker.bootstrap,
        FANGXIAN_APP_ID=settings.app_id,
        FANGXIAN_CLICKHOUSE_URL=database_url,
        FANGXIAN_CONSOLE_SECRET="audit-test-console-secret",
        FANGXIAN_CONSOLE_CREDENTIALS_FILE=str(tmp / "creds.json"),
        FANGXIAN_CONSOLE_PORT=str(port),
        FANGXIAN_AUDIT_SPOOL_DIR=str(tmp / "spool"),
        **{
            f"FANGXIAN_TOPIC_{f.name.upper()}": getattr(settings.topics, f.name)
            for f in fields(Topics)
        },
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "fangxian.cli", "console"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "console did not come up with its staff list"
            try:
                health = httpx.get(f"{url}/healthz", timeout=2).json()
                if health.get("staff") == len(STAFF):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield Console(url, database_url, alerts, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        admin.execute(f"DROP DATABASE IF EXISTS {database}")
        admin.disconnect()


def browser(console: Console) -> httpx.Client:
    return httpx.Client(
        base_url=console.url, headers={"User-Agent": UA}, timeout=30, follow_redirects=True
    )


def sign_in(client: httpx.Client, staff_id: str, password: str = PASSWORD) -> httpx.Response:
    client.cookies.clear()
    form = client.get("/login")
    token = form.text.split('name="csrf" value="')[1].split('"')[0]
    return client.post("/login", data={"csrf": token, "staff_id": staff_id, "password": password})


def csrf_of(client: httpx.Client) -> str:
    return client.get("/alerts").text.split('name="csrf-token" content="')[1].split('"')[0]


def audit_rows(console: Console, since_ms: int) -> list[dict[str, Any]]:
    reader = open_writer(console.database_url)
    try:
        rows = read_contract_rows(reader, "audit_log", final=False)
    finally:
        reader.close()
    return sorted((r for r in rows if r["at"] >= since_ms), key=lambda r: r["at"])


# -- one case per action kind ------------------------------------------------------------------
def signed_in(c: Console, client: httpx.Client) -> None:
    assert sign_in(client, "guard-east").status_code == 200  # redirected to /alerts


def wrong_password(c: Console, client: httpx.Client) -> None:
    assert sign_in(client, "guard-east", "not the password").status_code == 401


def unknown_staff(c: Console, client: httpx.Client) -> None:
    assert sign_in(client, PHONE, PASSWORD).status_code == 401


def signed_out(c: Console, client: httpx.Client) -> None:
    signed_in(c, client)
    done = client.post("/logout", data={"csrf": csrf_of(client)})
    assert done.url.path == "/login"


def password_changed(c: Console, client: httpx.Client) -> None:
    assert sign_in(client, "guard-pw").status_code == 200
    done = client.post(
        "/account/password",
        data={
            "csrf": csrf_of(client),
            "current": PASSWORD,
            "new": NEW_PASSWORD,
            "again": NEW_PASSWORD,
        },
    )
    assert done.status_code == 200 and "密码已修改" in done.text
    assert client.get("/api/me").json()["staff_id"] == "guard-pw", "this session goes on"
    assert sign_in(client, "guard-pw", NEW_PASSWORD).status_code == 200


def password_refused(c: Console, client: httpx.Client) -> None:
    assert sign_in(client, "guard-north").status_code == 200
    done = client.post(
        "/account/password",
        data={
            "csrf": csrf_of(client),
            "current": "guess",
            "new": NEW_PASSWORD,
            "again": NEW_PASSWORD,
        },
    )
    assert done.status_code == 400


def acknowledged(c: Console, client: httpx.Client) -> None:
    signed_in(c, client)
    alert_id = c.alerts[EAST]["alert_id"]
    done = client.post(f"/api/alerts/{alert_id}/ack", headers={"X-CSRF-Token": csrf_of(client)})
    assert done.status_code == 200, done.text


def resolved(c: Console, client: httpx.Client) -> None:
    signed_in(c, client)
    alert_id = c.alerts[EAST]["alert_id"]
    done = client.post(
        f"/api/alerts/{alert_id}/resolve",
        json={"note": NOTE},
        headers={"X-CSRF-Token": csrf_of(client)},
    )
    assert done.status_code == 200, done.text


def out_of_scope(c: Console, client: httpx.Client) -> None:
    signed_in(c, client)
    alert_id = c.alerts[NORTH]["alert_id"]
    done = client.post(f"/api/alerts/{alert_id}/ack", headers={"X-CSRF-Token": csrf_of(client)})
    assert done.status_code == 404


SILENCE = {
    "community": EAST,
    "gates": "east-gate",
    "duration": "2h",
    "reason": "测温仪维修，联系 张三 13900001111",  # free text: not kept in the audit row
}


def silenced(c: Console, client: httpx.Client) -> None:
    assert sign_in(client, "office-east").status_code == 200
    done = client.post("/api/silences", json=SILENCE, headers={"X-CSRF-Token": csrf_of(client)})
    assert done.status_code == 201, done.text


def silence_refused(c: Console, client: httpx.Client) -> None:
    signed_in(c, client)  # a gate guard: the role may not silence
    done = client.post("/api/silences", json=SILENCE, headers={"X-CSRF-Token": csrf_of(client)})
    assert done.status_code == 403, done.text


def ack_link(good: bool) -> Callable[[Console, httpx.Client], None]:
    def open_link(c: Console, client: httpx.Client) -> None:
        asyncio.run(_open_ack_link(c, good))

    return open_link


async def _open_ack_link(c: Console, good: bool) -> None:
    signer = AckSigner(ACK_KEY, "http://acks.invalid")
    published: list[dict[str, Any]] = []

    async def publish(record: dict[str, Any], partition: int) -> None:
        published.append(record)

    spool = tempfile.mkdtemp(prefix="acklink-spool-")
    trail = AuditTrail(lambda: open_writer(c.database_url), spool, "acklink")
    app = ack_app(signer, publish, audit=trail)
    claim = AckClaim(c.alerts[EAST]["alert_id"], "guard-east", int(time.time() * 1000) + 60_000, 1)
    params = signer.params(claim)
    if not good:
        params["sig"] = params["sig"][::-1]  # forged
    async with AioClient(TestServer(app)) as link:
        answer = await link.get("/ack", params=params, headers={"User-Agent": UA})
        assert answer.status == (200 if good else 403)
    trail.close()
    assert len(published) == (1 if good else 0)
    assert trail.spooled == 0, "ClickHouse took the row"


CASES = [
    pytest.param(
        signed_in,
        {"actor": "guard-east", "action": "sign_in", "outcome": "ok", "scope": f"community:{EAST}"},
        id="sign-in",
    ),
    pytest.param(
        wrong_password,
        {
            "actor": "guard-east",
            "action": "sign_in",
            "outcome": "denied",
            "reason": "wrong_password",
        },
        id="failed sign-in: wrong password",
    ),
    pytest.param(
        unknown_staff,
        {"actor": "unknown", "action": "sign_in", "outcome": "denied", "reason": "unknown_staff"},
        id="failed sign-in: unknown staff id (a phone number typed in)",
    ),
    pytest.param(
        signed_out, {"actor": "guard-east", "action": "sign_out", "outcome": "ok"}, id="sign-out"
    ),
    pytest.param(
        password_changed,
        {"actor": "guard-pw", "action": "password_change", "outcome": "ok"},
        id="password change",
    ),
    pytest.param(
        password_refused,
        {
            "actor": "guard-north",
            "action": "password_change",
            "outcome": "denied",
            "reason": "wrong_password",
        },
        id="password change with a wrong current password",
    ),
    pytest.param(
        acknowledged,
        {"actor": "guard-east", "action": "alert_ack", "outcome": "ok", "alert": EAST},
        id="acknowledge",
    ),
    pytest.param(
        resolved,
        {"actor": "guard-east", "action": "alert_resolve", "outcome": "ok", "alert": EAST},
        id="resolve",
    ),
    pytest.param(
        out_of_scope,
        {
            "actor": "guard-east",
            "action": "alert_ack",
            "outcome": "denied",
            "alert": NORTH,
            "reason": "not_your_community",
        },
        id="acknowledge another community's alert",
    ),
    pytest.param(
        silenced,
        {
            "actor": "office-east",
            "action": "alert_silence",
            "outcome": "ok",
            "scope": f"community:{EAST}",
        },
        id="silence",
    ),
    pytest.param(
        silence_refused,
        {
            "actor": "guard-east",
            "action": "alert_silence",
            "outcome": "denied",
            "reason": "role_may_not_silence",
        },
        id="silence by a role that may not",
    ),
    pytest.param(
        ack_link(True),
        {"actor": "guard-east", "action": "alert_ack", "outcome": "ok", "via": "link"},
        id="acknowledge link",
    ),
    pytest.param(
        ack_link(False),
        {
            "actor": "unknown",
            "action": "alert_ack",
            "outcome": "denied",
            "via": "link",
            "reason": "bad_signature",
        },
        id="forged acknowledge link",
    ),
]


@pytest.mark.parametrize(("act", "expected"), CASES)
def test_each_action_leaves_its_audit_row(
    console: Console, act: Callable[[Console, httpx.Client], None], expected: dict[str, str]
) -> None:
    since = int(time.time() * 1000) - 1
    with browser(console) as client:
        act(console, client)
    rows = audit_rows(console, since)
    wanted = [
        r
        for r in rows
        if (r["actor"], r["action"], r["details"].get("outcome"))
        == (expected["actor"], expected["action"], expected["outcome"])
    ]
    assert len(wanted) == 1, rows
    [row] = wanted
    details = row["details"]
    via = expected.get("via", "console")
    assert details["via"] == via
    assert row["origin"] == f"{'acklink' if via == 'link' else 'console'}@127.0.0.1"
    assert details["ua"] == UA
    assert abs(row["at"] - time.time() * 1000) < 60_000
    if "scope" in expected:
        assert row["scope"] == expected["scope"]
    if "reason" in expected:
        assert details["reason"] == expected["reason"]
    if "alert" in expected:
        assert details["alert_id"] == console.alerts[expected["alert"]]["alert_id"]
        assert row["scope"] == f"community:{expected['alert']}"
    if via == "link":
        assert details["alert_id"] == console.alerts[EAST]["alert_id"]
    # no password, no note, no phone number in any row written for this case
    text = json.dumps(rows, ensure_ascii=False)
    for secret in (PASSWORD, NEW_PASSWORD, "not the password", PHONE, NOTE, "13900001111", "张三"):
        assert secret not in text
    if expected["actor"] == "unknown" and via == "console":
        assert len(details["typed_ref"]) == 16


# -- who reads the audit -----------------------------------------------------------------------
def activity(client: httpx.Client, query: str = "") -> httpx.Response:
    return client.get(f"/api/activity{query}")


def test_staff_see_only_their_own_history(console: Console) -> None:
    with browser(console) as client:
        sign_in(client, "guard-east")
        mine = activity(client).json()["rows"]
        assert {r["actor"] for r in mine} == {"guard-east"}
        assert {"sign_in", "contacts_query"} <= {r["action"] for r in mine}
        [query] = [r for r in mine if r["action"] == "contacts_query"]
        assert query["subject"] == "tok-****cdef" and TOKEN not in json.dumps(mine)
        page = client.get("/activity")
        assert page.status_code == 200 and "我的操作记录" in page.text
        assert "guard-busy" not in page.text
        assert activity(client, "?view=county").status_code == 403, "not an officer"
        sign_in(client, "guard-north")
        theirs = activity(client).json()["rows"]
        assert theirs and {r["actor"] for r in theirs} == {"guard-north"}, "control"


def test_history_comes_a_page_at_a_time(console: Console) -> None:
    with browser(console) as client:
        sign_in(client, "guard-busy")
        first = activity(client).json()
        second = activity(client, "?page=2").json()
    assert (len(first["rows"]), first["has_next"]) == (50, True)
    assert (len(second["rows"]), second["has_next"]) == (BUSY_ROWS + 1 - 50, False)
    ids = [r["audit_id"] for r in first["rows"] + second["rows"]]
    assert len(set(ids)) == BUSY_ROWS + 1, "no row twice, none left out"
    assert first["rows"][0]["action"] == "sign_in", "newest first"


def test_a_county_officer_sees_their_county_and_no_other(console: Console) -> None:
    with browser(console) as client:
        sign_in(client, "guard-north")  # a row of county 350200
        sign_in(client, "officer")
        county = activity(client, "?view=county").json()["rows"]
        page = client.get("/activity?view=county")
        sign_in(client, "officer-north")
        north = activity(client, "?view=county").json()["rows"]
    actors = {r["actor"] for r in county}
    assert {"guard-east", "guard-busy"} <= actors  # EAST staff, by their rows' scope
    assert "guard-north" not in actors and "officer-north" not in actors
    own_staff = {s for s, (community, _) in STAFF.items() if community[2:8] == "350100"}
    for row in county:  # about a community of county 350100, or by one of its staff
        assert row["scope"][12:18] == "350100" or row["actor"] in own_staff, row
    assert page.status_code == 200 and "区县操作审计" in page.text
    # control: the other county's officer sees that county's rows and not 350100's — only
    # guard-east's try at a NORTH alert, which is about a community of 350200
    assert {r["actor"] for r in north} >= {"guard-north"}
    north_staff = {s for s, (community, _) in STAFF.items() if community[2:8] == "350200"}
    for row in north:
        assert row["scope"][12:18] == "350200" or row["actor"] in north_staff, row
    assert [(r["actor"], r["outcome"]) for r in north if r["actor"] not in north_staff] == [
        ("guard-east", "denied")
    ]
