"""What the console puts in the audit log (``sinks.audit``): one row per sign-in (successful or
not), sign-out, password change and alert action, with the staff id, the client's address and
user agent, and the outcome — written *before* the action (``ConsoleAudit.record`` raises
``AuditUnavailable`` and the caller answers 503 when the row can be neither inserted nor
spooled).

Never in a row: a password, a resolution note (free text that may name a person), a raw staff
id that is not one (what someone typed into the staff-id box may be a password or a phone
number: it becomes ``unknown`` plus a keyed digest, so repeated tries of one string can be told
apart and the string cannot be read back).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from starlette.requests import Request

from sinks.audit import OK, AuditEntry, AuditTrail

USER_AGENT_MAX_CHARS = 200
UNKNOWN_ACTOR = "unknown"


def client_address(request: Request) -> str:
    """The client's address as the server saw it (uvicorn's ``proxy_headers`` put the
    forwarded address here when the proxy is trusted)."""
    return request.client.host if request.client is not None else "-"


def user_agent(request: Request) -> str:
    return request.headers.get("user-agent", "")[:USER_AGENT_MAX_CHARS]


class ConsoleAudit:
    """The console's side of the audit trail: entries built from a request."""

    def __init__(self, trail: AuditTrail, secret: str) -> None:
        self.trail = trail
        self._key = hashlib.sha256(b"fangxian audit unknown id\x1f" + secret.encode()).digest()

    def typed_ref(self, typed: str) -> str:
        """A keyed digest of an unknown staff id (the same string gives the same reference)."""
        return hmac.new(self._key, typed.encode(), hashlib.sha256).hexdigest()[:16]

    def entry(
        self,
        request: Request,
        action: str,
        actor: str,
        *,
        outcome: str = OK,
        scope: str = "",
        subject: str | None = None,
        details: Mapping[str, str] | None = None,
    ) -> AuditEntry:
        return AuditEntry(
            actor=actor or UNKNOWN_ACTOR,
            action=action,
            origin=f"console@{client_address(request)}",
            subject=subject,
            scope=scope,
            details={"ua": user_agent(request), "via": "console", **(details or {})},
            outcome=outcome,
        )

    def record(
        self,
        request: Request,
        action: str,
        actor: str,
        *,
        outcome: str = OK,
        scope: str = "",
        subject: str | None = None,
        details: Mapping[str, str] | None = None,
    ) -> str:
        """Write the row (ClickHouse, else the spool); raises ``AuditUnavailable``. Blocking:
        call it from a worker thread."""
        return self.trail.record(
            self.entry(
                request,
                action,
                actor,
                outcome=outcome,
                scope=scope,
                subject=subject,
                details=details,
            )
        )


def community_scope(community_id: str) -> str:
    """The ``scope`` of a row about a community (the daily report's CLI rows use the same)."""
    return f"community:{community_id}" if community_id else ""
