"""Where the console sends a browser after sign-in: the page it asked for (``next=``), when
that is one of the console's own pages, and the alerts page otherwise. ``safe_next`` is the
only way a ``next`` value becomes a redirect, so a crafted link cannot use the sign-in form to
send a guard to another site (an open redirect): only a path on this origin passes — no
scheme, no host, no ``//`` or ``\\`` that a browser reads as another host, no control
characters, and never back to the sign-in page itself."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote, unquote, urlsplit

HOME: Final = "/alerts"
MAX_NEXT: Final = 512
_PATH: Final = re.compile(r"^/[A-Za-z0-9\-._~%!$&'()*+,;=:@/?]*$")


def safe_next(value: object) -> str:
    """``value`` when it is a path of this console, else the alerts page."""
    if not isinstance(value, str) or not value or len(value) > MAX_NEXT:
        return HOME
    decoded = unquote(value)
    if (
        not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or "\\" in decoded
        or decoded.startswith("//")
        or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded)
        or not _PATH.match(value)
    ):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return HOME
    return value


def login_url(path: str, query: str = "") -> str:
    """The sign-in page that comes back to ``path`` (and its query) afterwards."""
    target = safe_next(path + (f"?{query}" if query else ""))
    if target == HOME:
        return "/login"
    return "/login?next=" + quote(target, safe="")
