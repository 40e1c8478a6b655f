"""Privacy helpers, one of each: keyed pseudonyms and masks for anything a person reads.

Raw ID numbers, phones and plates enter at the ingest point (the CSV loaders, the simulator) and
leave only as ``Pseudonymiser`` tokens; anything a person reads (alert messages, the CLI, the
demo console, reports) shows them through the ``mask_*`` helpers here.

Short tokens: ``mask_token`` hides a token of 8 characters or fewer completely and always as
``****`` (four stars, whatever its length), so a masked short token reveals neither its
characters nor its length; longer tokens keep their first and last four characters, enough to
tell tokens apart on a screen, not to look one up. (The engine's alert messages used to keep
the ends of a short token; that revealed most of it.)
"""

from __future__ import annotations

import hashlib
import hmac

from fangxian.core.codes import normalise_id_number, normalise_phone, normalise_plate

__all__ = [
    "TOKEN_HEX_CHARS",
    "Pseudonymiser",
    "mask_id_number",
    "mask_name",
    "mask_phone",
    "mask_plate",
    "mask_token",
]

# --- pseudonyms ------------------------------------------------------------------------------

TOKEN_HEX_CHARS = 32  # 128 bits: collisions are negligible for any community register


def _normalise_for_kind(kind: str, raw: str) -> str:
    if kind == "phone":
        return normalise_phone(raw)
    if kind == "plate":
        return normalise_plate(raw)
    return normalise_id_number(raw)


class Pseudonymiser:
    """Keyed pseudonyms: ``token(kind, raw)`` = first 32 hex chars of HMAC-SHA256(key, kind, raw).

    A plain hash of an ID number or phone can be brute-forced (the space is small), a keyed HMAC
    cannot without the key. The ``kind`` is mixed in so the same digits used as a phone and as
    an ID (or as a household and a pass number) give unrelated tokens: tokens of different kinds
    cannot be joined to each other. ``raw`` is normalised first (blanks, case, ``+86``, plate
    dots) so the same person or plate always gets the same token.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray) or not key:
            raise ValueError(
                "pseudonym key must be non-empty bytes (set FANGXIAN_PSEUDONYM_KEY) / "
                "假名化密钥不能为空"
            )
        self._key = bytes(key)

    @classmethod
    def from_text(cls, key: str) -> Pseudonymiser:
        """Build from a text key (e.g. ``Settings.pseudonym_key``), UTF-8 encoded."""
        return cls(key.encode("utf-8"))

    def __repr__(self) -> str:
        return "Pseudonymiser(key=<hidden>)"

    def token(self, kind: str, raw: str) -> str:
        if not kind or "\x00" in kind:
            raise ValueError("kind must be a non-empty name without NUL / 类型名无效")
        message = kind.encode("utf-8") + b"\x00" + _normalise_for_kind(kind, raw).encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:TOKEN_HEX_CHARS]


# --- masking ---------------------------------------------------------------------------------


def mask_id_number(id_number: str) -> str:
    """``110105********0123``: first 6 (area) and last 4 kept, 8 stars between."""
    s = normalise_id_number(id_number)
    if len(s) <= 10:
        return "*" * len(s)
    return s[:6] + "*" * 8 + s[-4:]


def mask_phone(phone: str) -> str:
    """``138****5678``: first 3 and last 4 of the digits kept."""
    try:
        digits = normalise_phone(phone)
    except ValueError:
        digits = "".join(c for c in phone if c.isdigit())
    if len(digits) < 8:
        return "*" * len(digits)
    return digits[:3] + "****" + digits[-4:]


SHORT_TOKEN_CHARS = 8  # a token this short or shorter is hidden completely


def mask_token(token: str | None) -> str:
    """``a1b2****e5f6``: first and last four kept; a token of 8 characters or fewer → ``****``
    (length hidden too); no token → ``-``."""
    if not token:
        return "-"
    if len(token) <= SHORT_TOKEN_CHARS:
        return "****"
    return token[:4] + "****" + token[-4:]


def mask_name(name: str) -> str:
    """``张三丰`` → ``张*丰``, ``张三`` → ``张*``, ``欧阳娜娜`` → ``欧**娜``."""
    s = name.strip()
    if len(s) <= 1:
        return "*" * len(s)
    if len(s) == 2:
        return s[0] + "*"
    return s[0] + "*" * (len(s) - 2) + s[-1]


def mask_plate(plate: str) -> str:
    """``闽A·12345`` → ``闽A***45``: province and authority kept, most of the serial hidden."""
    s = normalise_plate(plate)
    if len(s) <= 4:
        return "*" * len(s)
    return s[:2] + "*" * (len(s) - 4) + s[-2:]
