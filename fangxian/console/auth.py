"""Sign-in for the console: scrypt password hashes, signed session cookies, CSRF tokens.

- Passwords: ``hashlib.scrypt`` (RFC 7914; N=2**15, r=8, p=1, 16-byte salt, 32-byte key),
  stored as ``scrypt$N$r$p$salt$hash`` (base64) in the credentials file, one JSON object of
  staff id → hash, written by ``fangxian console passwd STAFF_ID`` with mode 0600. The file
  holds no personal data and no plain password; who a staff id is (community, role, name)
  comes from the roster topic ``reference.staff``.
- Sessions: the cookie is ``base64url(JSON) . base64url(HMAC-SHA256)`` under the
  ``console_secret`` setting; it carries the staff id, a random session id, the expiry and a
  fingerprint of the password hash (a new password ends every older session).
- CSRF: every state-changing request carries ``HMAC(secret, "csrf" | session id)`` in the
  ``X-CSRF-Token`` header or a ``csrf`` form field (synchroniser token bound to the session;
  SameSite=Strict on the cookie is the second fence). The sign-in form uses a double-submit
  cookie, since there is no session yet.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD_CHARS = 10


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(
            f"密码至少 {MIN_PASSWORD_CHARS} 个字符 "
            f"the password needs {MIN_PASSWORD_CHARS}+ characters"
        )
    salt = os.urandom(16)
    key = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, maxmem=SCRYPT_MAXMEM, dklen=32
    )
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, key = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=SCRYPT_MAXMEM,
            dklen=len(_unb64(key)),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(key))


class Credentials:
    """The credentials file: staff id → scrypt hash. Re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: float | None = None
        self._hashes: dict[str, str] = {}

    def _load(self) -> dict[str, str]:
        try:
            stamp = self.path.stat().st_mtime
        except FileNotFoundError:
            return {}
        if stamp != self._stamp:
            self._hashes = dict(json.loads(self.path.read_text(encoding="utf-8")))
            self._stamp = stamp
        return self._hashes

    def hash_of(self, staff_id: str) -> str | None:
        return self._load().get(staff_id)

    def set_password(self, staff_id: str, password: str, *, n: int = SCRYPT_N) -> None:
        hashes = dict(self._load())
        hashes[staff_id] = hash_password(password, n=n)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(hashes, out, indent=1, sort_keys=True)
        os.replace(tmp, self.path)
        self._stamp = None

    def check(self, staff_id: str, password: str) -> bool:
        stored = self.hash_of(staff_id)
        if stored is None:
            # same work as a real check, so a wrong staff id is not faster than a wrong password
            verify_password(password, _DUMMY_HASH)
            return False
        return verify_password(password, stored)


_DUMMY_HASH = "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def hash_fingerprint(stored: str) -> str:
    return hashlib.sha256(stored.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Session:
    staff_id: str
    session_id: str
    expires_s: int
    fingerprint: str


class SessionSigner:
    """Signs and checks session cookies and CSRF tokens with the console secret."""

    def __init__(self, secret: str, lifetime_s: int = 12 * 3600) -> None:
        if len(secret) < 16:
            raise ValueError(
                "FANGXIAN_CONSOLE_SECRET 未设置或太短 (16+ characters): it signs the console's "
                "session cookies"
            )
        self._key = secret.encode()
        self.lifetime_s = lifetime_s

    def __repr__(self) -> str:
        return "SessionSigner(...)"

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self._key, purpose.encode() + b"\x1f" + data, hashlib.sha256).digest()

    def issue(self, staff_id: str, fingerprint: str, now_s: float | None = None) -> str:
        now = int(time.time() if now_s is None else now_s)
        body = json.dumps(
            {
                "s": staff_id,
                "i": secrets.token_urlsafe(12),
                "e": now + self.lifetime_s,
                "h": fingerprint,
            },
            separators=(",", ":"),
        ).encode()
        return f"{_b64(body)}.{_b64(self._mac('session', body))}"

    def read(self, cookie: str | None, now_s: float | None = None) -> Session | None:
        """The session of a cookie, or None when it is missing, forged or expired."""
        if not cookie or "." not in cookie:
            return None
        body_text, mac_text = cookie.split(".", 1)
        try:
            body = _unb64(body_text)
            given = _unb64(mac_text)
        except ValueError:
            return None
        if not hmac.compare_digest(self._mac("session", body), given):
            return None
        try:
            data = json.loads(body)
            session = Session(str(data["s"]), str(data["i"]), int(data["e"]), str(data["h"]))
        except (ValueError, KeyError, TypeError):
            return None
        now = time.time() if now_s is None else now_s
        return session if now < session.expires_s else None

    def csrf_token(self, session_id: str) -> str:
        return _b64(self._mac("csrf", session_id.encode()))

    def csrf_ok(self, session_id: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session_id), str(token))
