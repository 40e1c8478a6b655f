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
    monkeypatch.setenv("FANGXIAN_CONSOLE_CREDENTIALS_FILE", str(path))
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    assert main(["console", "passwd", "st-east-day", "--password-stdin"]) == status
    if status == 0:
        assert password not in path.read_text(encoding="utf-8")
        assert list(json.loads(path.read_text(encoding="utf-8"))) == ["st-east-day"]
        assert Credentials(path).check("st-east-day", password)
    else:
        assert not path.exists()
