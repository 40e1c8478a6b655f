"""``fangxian console passwd``: the password goes into the credentials file as a hash."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from fangxian.cli import main
from fangxian.console.auth import Credentials


@pytest.mark.parametrize(
    ("password", "status"),
    [
        pytest.param("a long enough password", 0, id="set"),
        pytest.param("short", 1, id="too short: refused, nothing written"),
    ],
)
def test_passwd_writes_a_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: str, status: int
) -> None:
    path = tmp_path / "creds.json"
    spool = tmp_path / "spool"
    monkeypatch.setenv("FANGXIAN_CONSOLE_CREDENTIALS_FILE", str(path))
    # a ClickHouse without the audit table (never migrated): the audit row is spooled
    monkeypatch.setenv("FANGXIAN_CLICKHOUSE_URL", f"chdb://{tmp_path / 'chdb'}")
    monkeypatch.setenv("FANGXIAN_AUDIT_SPOOL_DIR", str(spool))
    monkeypatch.setenv("FANGXIAN_STAFF_ID", "admin-zhou")
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    assert main(["console", "passwd", "st-east-day", "--password-stdin"]) == status
    spooled = [
        json.loads(line)
        for file in sorted(spool.glob("*.jsonl"))
        for line in file.read_text(encoding="utf-8").splitlines()
    ]
    if status == 0:
        assert password not in path.read_text(encoding="utf-8")
        assert list(json.loads(path.read_text(encoding="utf-8"))) == ["st-east-day"]
        assert Credentials(path).check("st-east-day", password)
        [row] = spooled  # audited before the password was set: who, for whom, never what
        assert (row["actor"], row["action"]) == ("admin-zhou", "password_change")
        assert row["details"]["target"] == "st-east-day"
        assert password not in json.dumps(row)
    else:
        assert not path.exists()
        assert spooled == [], "a refused password leaves no audit row (nothing was changed)"
