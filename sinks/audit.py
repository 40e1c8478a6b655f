"""The audit writer: one append-only ``audit_log`` row per staff action that touches personal
data (migration 0006). Who (``actor``), when (``at``), what (``action``, the subject masked, a
scope and details) and from where (``origin``).

Every tool that shows or changes personal data calls ``write_audit`` *before* it does so, with
the connection it is about to use: if the audit row cannot be written, the action does not
happen (fail closed). The dispatcher calls it for an alert acknowledgement (``ALERT_ACK``).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from fangxian.core.privacy import mask_token
from sinks.base import Writer

TABLE: Final = "audit_log"

CONTACTS_QUERY: Final = "contacts_query"
REPORT_EXPORT: Final = "report_export"
FORGET: Final = "forget"
ALERT_ACK: Final = "alert_ack"
ACTIONS: Final = frozenset({CONTACTS_QUERY, REPORT_EXPORT, FORGET, ALERT_ACK})


class AuditError(ValueError):
    """An audit entry that would not say who, what or from where."""


@dataclass(frozen=True)
class AuditEntry:
    """One staff action. ``subject`` is the pseudonymous token acted on (masked when written);
    ``scope`` what else names the action (a community, a county, an alert id)."""

    actor: str
    action: str
    origin: str
    subject: str | None = None
    scope: str = ""
    details: Mapping[str, str] = field(default_factory=dict)


def subject_ref(token: str | None) -> str:
    """A short digest of a subject token: the same subject gives the same reference, and the
    token (itself an HMAC pseudonym) cannot be read back from it."""
    if not token:
        return ""
    return hashlib.blake2b(token.encode("utf-8"), digest_size=8).hexdigest()


def audit_row(entry: AuditEntry, *, now_ms: int | None = None) -> dict[str, object]:
    """The ``audit_log`` row of ``entry`` (raises AuditError for an incomplete entry)."""
    if entry.action not in ACTIONS:
        raise AuditError(f"unknown audit action {entry.action!r}; known: {sorted(ACTIONS)}")
    if not entry.actor.strip() or not entry.origin.strip():
        raise AuditError("an audit entry needs an actor and an origin (who and from where)")
    at = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    return {
        "audit_id": str(uuid.uuid4()),
        "at": at,
        "actor": entry.actor,
        "action": entry.action,
        "subject": mask_token(entry.subject) if entry.subject else "",
        "subject_ref": subject_ref(entry.subject),
        "scope": entry.scope,
        "details": {str(k): str(v) for k, v in entry.details.items()},
        "origin": entry.origin,
    }


def write_audit(writer: Writer, entry: AuditEntry, *, now_ms: int | None = None) -> str:
    """Insert one audit row through ``writer``; returns its ``audit_id``. Errors propagate:
    the caller must not go on with the action when this raises."""
    row = audit_row(entry, now_ms=now_ms)
    writer.write(TABLE, [row])
    return str(row["audit_id"])
