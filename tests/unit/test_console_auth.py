"""The console's sign-in pieces: scrypt hashes, the credentials file, session cookies, CSRF."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fangxian.console.auth import (
    Credentials,
    SessionSigner,
    hash_fingerprint,
    hash_password,
    verify_password,
)

FAST_N = 2**10  # the tests' own cost factor; the default is 2**15
SECRET = "test-only-console-secret"


@pytest.mark.parametrize(
    ("given", "ok"),
    [
        pytest.param("correct horse battery", True, id="the right password verifies"),
        pytest.param("correct horse batterY", False, id="one character off fails"),
        pytest.param("", False, id="empty fails"),
    ],
)
def test_password_hash_verifies_only_the_password(given: str, ok: bool) -> None:
    stored = hash_password("correct horse battery", n=FAST_N)
    assert stored.startswith(f"scrypt${FAST_N}$8$1$")
    assert "correct" not in stored
    assert verify_password(given, stored) is ok


def test_same_password_hashes_differently_each_time() -> None:
    assert hash_password("correct horse battery", n=FAST_N) != hash_password(
        "correct horse battery", n=FAST_N
    )


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param("", id="empty"),
        pytest.param("bcrypt$x$y", id="another scheme"),
        pytest.param("scrypt$notanumber$8$1$AAAA$AAAA", id="garbled"),
    ],
)
def test_malformed_hashes_never_verify(stored: str) -> None:
    assert verify_password("anything at all", stored) is False


def test_short_password_is_refused() -> None:
    with pytest.raises(ValueError, match="10"):
        hash_password("short", n=FAST_N)


def test_credentials_file_is_private_and_holds_hashes_only(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    creds = Credentials(path)
    creds.set_password("st-east-day", "guard password 1", n=FAST_N)
    creds.set_password("st-office", "office password 2", n=FAST_N)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text(encoding="utf-8")
    assert "guard password" not in text and "office password" not in text
    assert set(json.loads(text)) == {"st-east-day", "st-office"}
    fresh = Credentials(path)
    assert fresh.check("st-east-day", "guard password 1")
    assert not fresh.check("st-east-day", "office password 2")
    assert not fresh.check("nobody", "guard password 1")


@pytest.mark.parametrize(
    ("tamper", "now_offset_s", "valid"),
    [
        pytest.param(lambda c: c, 0, True, id="a fresh cookie is valid"),
        pytest.param(lambda c: c, 3601, False, id="expired after its lifetime"),
        pytest.param(
            lambda c: c[:-2] + ("AA" if c[-2:] != "AA" else "BB"),
            0,
            False,
            id="a changed signature is refused",
        ),
        pytest.param(
            lambda c: "eyJzIjoic3Qtb2ZmaWNlIn0" + c[c.index(".") :],
            0,
            False,
            id="a changed body is refused",
        ),
        pytest.param(lambda c: "", 0, False, id="no cookie"),
        pytest.param(lambda c: "garbage", 0, False, id="garbage"),
    ],
)
def test_session_cookie(tamper, now_offset_s: int, valid: bool) -> None:  # type: ignore[no-untyped-def]
    signer = SessionSigner(SECRET, lifetime_s=3600)
    cookie = signer.issue("st-east-day", "fp", now_s=1_000_000)
    session = signer.read(tamper(cookie), now_s=1_000_000 + now_offset_s)
    assert (session is not None) is valid
    if valid:
        assert session is not None and session.staff_id == "st-east-day"


def test_cookie_of_another_secret_is_refused() -> None:
    cookie = SessionSigner("another-secret-of-16+").issue("st-east-day", "fp")
    assert SessionSigner(SECRET).read(cookie) is None


def test_csrf_token_is_bound_to_the_session() -> None:
    signer = SessionSigner(SECRET)
    token = signer.csrf_token("session-a")
    assert signer.csrf_ok("session-a", token)
    assert not signer.csrf_ok("session-b", token)
    assert not signer.csrf_ok("session-a", None)
    assert not signer.csrf_ok("session-a", "")


def test_secret_must_be_set() -> None:
    with pytest.raises(ValueError, match="FANGXIAN_CONSOLE_SECRET"):
        SessionSigner("")


def test_fingerprint_changes_with_the_hash() -> None:
    assert hash_fingerprint("scrypt$a") != hash_fingerprint("scrypt$b")
