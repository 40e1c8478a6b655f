"""Signed, expiring acknowledge links: the group bots are one-way, so a message carries a URL
that says "this person saw this alert" when opened.

The signature is HMAC-SHA256 (key: the ``ack_link_key`` setting) over
``alert_id \\n staff_id \\n expires_ms \\n partition``, base64url without padding. ``partition``
is the ``alerts`` partition the alert came from, so the endpoint writes the acknowledgement to
the ``alert.actions`` partition the owning dispatcher restores and tails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlencode


class LinkInvalid(ValueError):
    """A link whose signature does not verify (tampered, or signed with another key)."""


class LinkExpired(ValueError):
    """A genuine link opened after its expiry."""


@dataclass(frozen=True)
class AckClaim:
    alert_id: str
    staff_id: str
    expires_ms: int
    partition: int


def _mac(key: bytes, claim: AckClaim) -> str:
    msg = f"{claim.alert_id}\n{claim.staff_id}\n{claim.expires_ms}\n{claim.partition}".encode()
    digest = hmac.new(key, msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class AckSigner:
    def __init__(self, key_text: str, base_url: str) -> None:
        if not key_text:
            raise ValueError(
                "FANGXIAN_ACK_LINK_KEY is not set: acknowledge links are signed with it "
                "(未设置确认链接签名密钥 FANGXIAN_ACK_LINK_KEY)"
            )
        self._key = key_text.encode()
        self.base_url = base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"AckSigner(base_url={self.base_url!r})"

    def params(self, claim: AckClaim) -> dict[str, str]:
        return {
            "a": claim.alert_id,
            "s": claim.staff_id,
            "e": str(claim.expires_ms),
            "p": str(claim.partition),
            "sig": _mac(self._key, claim),
        }

    def link(self, claim: AckClaim, action: str = "ack") -> str:
        return f"{self.base_url}/{action}?{urlencode(self.params(claim))}"

    def verify(self, query: dict[str, str], now_ms: int) -> AckClaim:
        """The claim of a link's query parameters; raises ``LinkInvalid`` / ``LinkExpired``."""
        try:
            claim = AckClaim(query["a"], query["s"], int(query["e"]), int(query["p"]))
            given = query["sig"]
        except (KeyError, ValueError) as err:
            raise LinkInvalid(f"incomplete link: {err}") from err
        if not hmac.compare_digest(_mac(self._key, claim), given):
            raise LinkInvalid("signature does not match")
        if now_ms > claim.expires_ms:
            raise LinkExpired(f"link expired at {claim.expires_ms}")
        return claim
