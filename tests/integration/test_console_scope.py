"""The console's scope is enforced on the server: a member of staff asking directly for
another community's data (pages, JSON, the event stream, the report, an action on its alert)
gets 403 / 404; a county officer gets the communities of the county and no other. Real
Starlette app over real ClickHouse (chdb) holding two communities' alerts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from fangxian.console.app import SESSION_COOKIE, ConsoleDeps, build_app
from fangxian.console.auth import Credentials, SessionSigner
from fangxian.console.history import History
from fangxian.console.live import LiveState
from fangxian.console.roster import StaffDirectory
from fangxian.console.scope import StaffEntry
from fangxian.core.settings import Settings
from sinks import migrate, open_writer
from tests.integration.pipeline_harness import fresh_example

EAST = "91350100M000100Y43"
WEST = "91350100M000200Y4X"  # same county 350100
NORTH = "91350200M000300Y21"  # county 350200
PASSWORD = "a long enough password"
STAFF = {
    "guard-east": StaffEntry("guard-east", EAST, "东门 李师傅", "GATE_GUARD"),
    "guard-west": StaffEntry("guard-west", WEST, "西门 王师傅", "GATE_GUARD"),
    "officer": StaffEntry("officer", "11350100MB0000000X", "街道值班室", "STREET_OFFICE"),
    "retired": StaffEntry("retired", EAST, "已离岗", "GATE_GUARD", active=False),
}


@pytest.fixture
def console(chdb_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    writer = open_writer(chdb_url)
    migrate(writer)
    alerts = {
        c: fresh_example("Alert", alert_id=str(uuid.uuid4()), community_id=c)
        for c in (EAST, WEST, NORTH)
    }
    for alert in alerts.values():
        alert["created_at"] = alert["event_time"]
    writer.write("alerts", list(alerts.values()))
    creds = Credentials(tmp_path / "creds.json")
    for staff_id in STAFF:
        creds.set_password(staff_id, PASSWORD, n=2**10)
    settings = Settings(console_secret="test-only-console-secret")
    deps = ConsoleDeps(
        settings=settings,
        signer=SessionSigner(settings.console_secret),
        credentials=creds,
        directory=StaffDirectory(STAFF),
        state=LiveState(),
        history=History(writer, settings.default_timezone),
    )
    try:
        with TestClient(build_app(deps)) as client:
            yield client, alerts
    finally:
        writer.close()


def sign_in(client: TestClient, staff_id: str, password: str = PASSWORD) -> int:
    client.cookies.clear()
    form = client.get("/login")
    token = form.text.split('name="csrf" value="')[1].split('"')[0]
    done = client.post(
        "/login",
        data={"csrf": token, "staff_id": staff_id, "password": password},
        follow_redirects=False,
    )
    return done.status_code


def csrf_of(client: TestClient) -> str:
    page = client.get("/alerts")
    return page.text.split('name="csrf-token" content="')[1].split('"')[0]


@pytest.mark.parametrize(
    ("staff_id", "path", "status"),
    [
        pytest.param("guard-east", f"/api/alerts?community={EAST}", 200, id="own alerts"),
        pytest.param("guard-east", f"/api/alerts?community={WEST}", 403, id="neighbour's alerts"),
        pytest.param("guard-east", f"/alerts?community={WEST}", 403, id="neighbour's page"),
        pytest.param("guard-east", f"/api/decisions?community={WEST}", 403, id="decisions"),
        pytest.param("guard-east", f"/api/observation?community={WEST}", 403, id="observation"),
        pytest.param("guard-east", f"/api/devices?community={WEST}", 403, id="devices"),
        pytest.param("guard-east", f"/api/occupancy?community={WEST}", 403, id="occupancy"),
        pytest.param("guard-east", f"/report/file.csv?community={WEST}", 403, id="report csv"),
        pytest.param("guard-east", "/report/file.csv?county=350100", 403, id="county report"),
        pytest.param("guard-east", "/county", 403, id="county roll-up page"),
        pytest.param("guard-east", f"/events?community={WEST}", 403, id="event stream"),
        pytest.param("officer", f"/api/alerts?community={WEST}", 200, id="officer: county"),
        pytest.param("officer", f"/api/alerts?community={NORTH}", 403, id="officer: not 350200"),
        pytest.param("officer", "/report/file.csv?county=350100", 200, id="officer: county csv"),
        pytest.param("officer", "/report/file.csv?county=350200", 403, id="officer: other county"),
    ],
)
def test_another_communitys_data_is_refused(
    console: tuple[TestClient, dict[str, Any]], staff_id: str, path: str, status: int
) -> None:
    client, _alerts = console
    assert sign_in(client, staff_id) == 303
    assert client.get(path, follow_redirects=False).status_code == status


def test_own_alerts_only_and_masked(console: tuple[TestClient, dict[str, Any]]) -> None:
    client, alerts = console
    sign_in(client, "guard-east")
    got = client.get("/api/alerts").json()["alerts"]
    assert [a["alert_id"] for a in got] == [alerts[EAST]["alert_id"]]
    assert got[0]["subject"] == "9802****c951"
    page = client.get("/alerts").text
    assert alerts[EAST]["alert_id"] in page and alerts[WEST]["alert_id"] not in page
    assert alerts[EAST]["subject_id"] not in page


@pytest.mark.parametrize(
    ("community", "with_csrf", "status"),
    [
        pytest.param(WEST, True, 404, id="another community's alert does not exist"),
        pytest.param(EAST, False, 403, id="own alert without the CSRF token"),
    ],
)
def test_actions_are_scoped_and_need_csrf(
    console: tuple[TestClient, dict[str, Any]], community: str, with_csrf: bool, status: int
) -> None:
    client, alerts = console
    sign_in(client, "guard-east")
    headers = {"X-CSRF-Token": csrf_of(client)} if with_csrf else {}
    done = client.post(f"/api/alerts/{alerts[community]['alert_id']}/ack", headers=headers)
    assert done.status_code == status


def test_cross_site_origin_is_refused(console: tuple[TestClient, dict[str, Any]]) -> None:
    client, alerts = console
    sign_in(client, "guard-east")
    done = client.post(
        f"/api/alerts/{alerts[EAST]['alert_id']}/ack",
        headers={"X-CSRF-Token": csrf_of(client), "Origin": "http://evil.example"},
    )
    assert done.status_code == 403


@pytest.mark.parametrize(
    ("staff_id", "password", "status"),
    [
        pytest.param("guard-east", PASSWORD, 303, id="right password"),
        pytest.param("guard-east", "a wrong password here", 401, id="wrong password"),
        pytest.param("retired", PASSWORD, 401, id="inactive in the roster"),
        pytest.param("nobody", PASSWORD, 401, id="not in the roster"),
    ],
)
def test_sign_in(
    console: tuple[TestClient, dict[str, Any]], staff_id: str, password: str, status: int
) -> None:
    client, _ = console
    assert sign_in(client, staff_id, password) == status


def test_session_cookie_flags_and_no_session(console: tuple[TestClient, dict[str, Any]]) -> None:
    client, _ = console
    client.cookies.clear()
    assert client.get("/api/alerts").status_code == 401
    assert client.get("/alerts", follow_redirects=False).headers["location"] == "/login"
    form = client.get("/login")
    token = form.text.split('name="csrf" value="')[1].split('"')[0]
    done = client.post(
        "/login",
        data={"csrf": token, "staff_id": "guard-east", "password": PASSWORD},
        follow_redirects=False,
    )
    cookie = [v for k, v in done.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE in v]
    assert cookie and "httponly" in cookie[0].lower() and "samesite=strict" in cookie[0].lower()
    client.cookies.clear()
    refused = client.post(
        "/login", data={"csrf": "forged", "staff_id": "guard-east", "password": PASSWORD}
    )
    assert refused.status_code == 403  # no double-submit cookie: CSRF on the sign-in form too


def test_repeated_wrong_passwords_lock_the_staff_id(
    console: tuple[TestClient, dict[str, Any]],
) -> None:
    client, _ = console
    assert sign_in(client, "guard-west") == 303  # control: the right password works
    for _ in range(5):
        assert sign_in(client, "guard-west", "a wrong password here") == 401
    assert sign_in(client, "guard-west") == 401  # locked, even with the right one
    assert sign_in(client, "guard-east") == 303  # another staff id is not locked


@pytest.mark.parametrize(
    ("community", "signed_in", "status", "location"),
    [
        pytest.param(EAST, True, 200, None, id="own alert's page: first and marked"),
        pytest.param(WEST, True, 404, None, id="another community's alert's page does not exist"),
        pytest.param(
            EAST, False, 303, "/login?next=%2Falerts%2F{id}", id="not signed in: sign-in first"
        ),
    ],
)
def test_an_alerts_own_page(
    console: tuple[TestClient, dict[str, Any]],
    community: str,
    signed_in: bool,
    status: int,
    location: str | None,
) -> None:
    client, alerts = console
    alert_id = alerts[community]["alert_id"]
    client.cookies.clear()
    if signed_in:
        sign_in(client, "guard-east")
    got = client.get(f"/alerts/{alert_id}", follow_redirects=False)
    assert got.status_code == status
    if location is not None:
        assert got.headers["location"] == location.format(id=alert_id)
    if status == 200:
        assert f'<tr data-alert-id="{alert_id}" class="sev-' in got.text
        assert got.text.index(f'data-alert-id="{alert_id}"') == got.text.index("data-alert-id=")
        assert 'focus">' in got.text.split(f'data-alert-id="{alert_id}"')[1].split("\n")[0]


@pytest.mark.parametrize(
    ("next_value", "landing"),
    [
        pytest.param("/alerts/{id}", "/alerts/{id}", id="back to the alert asked for"),
        pytest.param("https://evil.example/x", "/alerts", id="another site: the alerts page"),
        pytest.param("//evil.example/x", "/alerts", id="scheme-relative: the alerts page"),
    ],
)
def test_sign_in_goes_back_to_the_page_asked_for_and_nowhere_else(
    console: tuple[TestClient, dict[str, Any]], next_value: str, landing: str
) -> None:
    client, alerts = console
    alert_id = alerts[EAST]["alert_id"]
    client.cookies.clear()
    form = client.get("/login", params={"next": next_value.format(id=alert_id)})
    token = form.text.split('name="csrf" value="')[1].split('"')[0]
    done = client.post(
        "/login",
        data={
            "csrf": token,
            "staff_id": "guard-east",
            "password": PASSWORD,
            "next": next_value.format(id=alert_id),
        },
        follow_redirects=False,
    )
    assert (done.status_code, done.headers["location"]) == (303, landing.format(id=alert_id))
