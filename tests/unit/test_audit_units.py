"""The audit row: complete (who, when, what, from where), masked, and refused when incomplete;
the CLI writes it before the action, so an audit failure stops the action (fail closed). The
long-running processes' ``AuditTrail``: a row ClickHouse does not take is spooled on disk and
replayed, a dead process's spool is adopted, and with nowhere to write the action is refused."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from fangxian import cli
from fangxian.core.settings import Settings
from fangxian.reporting.audit import staff_entry
from sinks.audit import (
    ALERT_ACK,
    PASSWORD_CHANGE,
    SIGN_IN,
    SIGN_OUT,
    AuditEntry,
    AuditError,
    AuditTrail,
    AuditUnavailable,
    audit_row,
    subject_ref,
    write_audit,
)

TOKEN = "tok-abcdef-123456"


def test_row_masks_the_subject_and_keeps_a_reference() -> None:
    row = audit_row(
        AuditEntry(actor="li", action="contacts_query", origin="cli@h", subject=TOKEN),
        now_ms=1_600_000_000_000,
    )
    assert row["subject"] == "tok-****3456"
    assert row["subject_ref"] == subject_ref(TOKEN) != TOKEN
    assert row["at"] == 1_600_000_000_000
    assert TOKEN not in repr(row)


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(AuditEntry(actor="", action="forget", origin="cli@h"), id="no actor"),
        pytest.param(AuditEntry(actor="li", action="forget", origin=" "), id="no origin"),
        pytest.param(AuditEntry(actor="li", action="peek", origin="cli@h"), id="unknown action"),
    ],
)
def test_incomplete_entries_are_refused(entry: AuditEntry) -> None:
    with pytest.raises(AuditError):
        audit_row(entry)


@pytest.mark.parametrize(
    ("settings", "env", "actor", "origin_end"),
    [
        pytest.param(Settings(staff_id="zhang"), {"USER": "root"}, "zhang", "", id="staff id wins"),
        pytest.param(Settings(), {"USER": "wang"}, "wang", "", id="OS login otherwise"),
        pytest.param(
            Settings(),
            {"USER": "wang", "SSH_CLIENT": "10.0.0.9 5000 22"},
            "wang",
            " from 10.0.0.9",
            id="SSH client address recorded",
        ),
    ],
)
def test_staff_entry_says_who_and_where(
    settings: Settings, env: dict[str, str], actor: str, origin_end: str
) -> None:
    entry = staff_entry(settings, "forget", subject=TOKEN, env=env)
    assert entry.actor == actor
    assert entry.origin.startswith("cli@") and entry.origin.endswith(origin_end)


class RefusingWriter:
    """Stands in for a ClickHouse connection whose audit insert fails."""

    database = "fx"

    def write(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        raise RuntimeError(f"insert into {table} refused")

    def execute(self, sql: str) -> None:
        raise AssertionError("no statement may run after a failed audit")

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise AssertionError("no query may run after a failed audit")

    def close(self) -> None:
        pass


def test_write_audit_propagates_the_failure() -> None:
    with pytest.raises(RuntimeError):
        write_audit(RefusingWriter(), AuditEntry(actor="li", action="forget", origin="cli@h"))


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(
            ["contacts", TOKEN, "--from", "2020-02-10", "--to", "2020-02-11"], id="contacts"
        ),
        pytest.param(["forget", TOKEN], id="forget"),
        pytest.param(
            ["report", "--community", "91350100M000100Y43", "--date", "2020-02-10"], id="report"
        ),
    ],
)
def test_no_audit_row_no_action(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    monkeypatch.setattr("sinks.open_writer", lambda url, **_: RefusingWriter())
    # the CLI's error path ends the command (no traceback) before the action runs
    assert cli.main(argv) != 0
    assert "audit_log" in capsys.readouterr().err


class FlakyWriter:
    """A ClickHouse connection that refuses inserts while ``down``; keeps what it took."""

    database = "fx"

    def __init__(self) -> None:
        self.down = True
        self.rows: list[dict[str, Any]] = []

    def write(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        if self.down:
            raise ConnectionRefusedError("ClickHouse is down")
        assert table == "audit_log"
        self.rows.extend(dict(r) for r in rows)
        return len(rows)

    def execute(self, sql: str) -> None:
        raise AssertionError("the audit trail only inserts")

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spooled_rows(spool: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(spool.glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


def test_outage_rows_are_spooled_then_replayed(tmp_path: Path) -> None:
    writer, clock = FlakyWriter(), Clock()
    trail = AuditTrail(lambda: writer, tmp_path / "spool", "console", retry_s=5.0, clock=clock)
    first = trail.record(AuditEntry(actor="li", action=SIGN_IN, origin="console@10.0.0.8"))
    assert trail.pending == 1 and writer.rows == []
    [row] = spooled_rows(tmp_path / "spool")  # on disk (fsync'd) before record() returned
    assert row["audit_id"] == first and row["details"]["outcome"] == "ok"
    writer.down = False
    clock.now += 1  # inside the retry window: straight to the spool, the server is not asked
    trail.record(AuditEntry(actor="li", action=SIGN_OUT, origin="console@10.0.0.8"))
    assert trail.pending == 2 and writer.rows == []
    assert trail.drain() == 2
    assert [r["action"] for r in writer.rows] == [SIGN_IN, SIGN_OUT]
    assert spooled_rows(tmp_path / "spool") == [] and trail.pending == 0
    trail.record(AuditEntry(actor="li", action=SIGN_IN, origin="console@10.0.0.8"))
    assert len(writer.rows) == 3 and trail.pending == 0, "control: with ClickHouse up, no spool"
    trail.close()


def test_a_failed_drain_keeps_the_rows(tmp_path: Path) -> None:
    writer = FlakyWriter()
    trail = AuditTrail(lambda: writer, tmp_path, "acklink", retry_s=0.0)
    trail.record(AuditEntry(actor="li", action=ALERT_ACK, origin="acklink@10.0.0.8"))
    assert trail.drain() == 0 and len(spooled_rows(tmp_path)) == 1
    writer.down = False
    assert trail.drain() == 1 and writer.rows[0]["actor"] == "li"
    trail.close()


def test_nowhere_to_write_refuses_the_action(tmp_path: Path) -> None:
    blocker = tmp_path / "spool"
    blocker.write_text("a file where the spool directory should be", encoding="utf-8")
    trail = AuditTrail(lambda: FlakyWriter(), blocker, "console")
    with pytest.raises(AuditUnavailable):
        trail.record(AuditEntry(actor="li", action=ALERT_ACK, origin="console@h"))
    assert trail.pending == 0


def test_a_dead_processs_spool_is_adopted(tmp_path: Path) -> None:
    dead = FlakyWriter()
    gone = AuditTrail(lambda: dead, tmp_path, "console", retry_s=60.0)
    gone.record(AuditEntry(actor="wang", action=PASSWORD_CHANGE, origin="console@h"))
    gone.close()  # its process ends with a row still spooled: the flock is released
    writer = FlakyWriter()
    writer.down = False
    heir = AuditTrail(lambda: writer, tmp_path, "console")
    assert heir.drain() == 1
    assert [r["actor"] for r in writer.rows] == ["wang"] and spooled_rows(tmp_path) == []


def test_a_live_processs_spool_is_left_to_it(tmp_path: Path) -> None:
    alive = AuditTrail(lambda: FlakyWriter(), tmp_path, "console", retry_s=60.0)
    alive.record(AuditEntry(actor="wang", action=SIGN_IN, origin="console@h"))
    writer = FlakyWriter()
    writer.down = False
    other = AuditTrail(lambda: writer, tmp_path, "acklink")
    assert other.drain() == 0 and len(spooled_rows(tmp_path)) == 1
    alive.close()
    assert other.drain() == 1, "control: once the owner is gone the file is adopted"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"outcome": "maybe"}, "outcome", id="unknown outcome"),
        pytest.param({"action": "silence_everything"}, "action", id="unknown action"),
    ],
)
def test_outcome_and_action_are_from_the_lists(changes: dict[str, Any], message: str) -> None:
    entry = AuditEntry(actor="li", action=ALERT_ACK, origin="console@h")
    with pytest.raises(AuditError, match=message):
        audit_row(dataclasses.replace(entry, **changes))


def test_details_are_bounded_and_carry_the_outcome() -> None:
    row = audit_row(
        AuditEntry(
            actor="li",
            action=SIGN_IN,
            origin="console@h",
            details={"ua": "x" * 5000},
            outcome="denied",
        )
    )
    details = row["details"]
    assert isinstance(details, dict)
    assert details["outcome"] == "denied" and len(details["ua"]) == 256
