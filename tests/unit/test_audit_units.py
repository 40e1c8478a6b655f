"""The audit row: complete (who, when, what, from where), masked, and refused when incomplete;
the CLI writes it before the action, so an audit failure stops the action (fail closed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from fangxian import cli
from fangxian.core.settings import Settings
from fangxian.reporting.audit import staff_entry
from sinks.audit import AuditEntry, AuditError, audit_row, subject_ref, write_audit

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
