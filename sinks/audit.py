"""The audit writer: one append-only ``audit_log`` row per staff action that touches personal
data (migration 0006). Who (``actor``), when (``at``), what (``action``, the subject masked, a
scope and details — the ``outcome`` among them) and from where (``origin``).

Two ways in, both *before* the action:

- ``write_audit``: the CLI tools (contacts, report, forget) write through the connection they
  are about to use; if the row cannot be written the tool stops (fail closed).
- ``AuditTrail``: the long-running processes (the console, the dispatcher's acknowledge
  endpoint) must go on acknowledging alerts through a ClickHouse outage, so a row ClickHouse
  does not take is appended (fsync'd) to a local spool file and replayed by ``drain()``; only
  when neither ClickHouse nor the spool takes it does ``record`` raise ``AuditUnavailable`` and
  the caller refuses the action (docs/security.md, "Audit log").
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from fangxian.core.privacy import mask_token
from sinks.base import Writer

log = logging.getLogger(__name__)

TABLE: Final = "audit_log"

CONTACTS_QUERY: Final = "contacts_query"
REPORT_EXPORT: Final = "report_export"
FORGET: Final = "forget"
ALERT_ACK: Final = "alert_ack"
ALERT_RESOLVE: Final = "alert_resolve"
# the hook for silences (issue 22 item 1): a silence created or ended from the console or CLI
ALERT_SILENCE: Final = "alert_silence"
SIGN_IN: Final = "sign_in"
SIGN_OUT: Final = "sign_out"
PASSWORD_CHANGE: Final = "password_change"
ACTIONS: Final = frozenset(
    {
        CONTACTS_QUERY,
        REPORT_EXPORT,
        FORGET,
        ALERT_ACK,
        ALERT_RESOLVE,
        ALERT_SILENCE,
        SIGN_IN,
        SIGN_OUT,
        PASSWORD_CHANGE,
    }
)

# details["outcome"]: the action went ahead / was refused (wrong password, locked, not the
# staff member's community, a bad or expired link) / was let through and then failed
OK: Final = "ok"
DENIED: Final = "denied"
ERROR: Final = "error"
OUTCOMES: Final = frozenset({OK, DENIED, ERROR})
DETAIL_MAX_CHARS: Final = 256


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
    outcome: str = OK


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
    if entry.outcome not in OUTCOMES:
        raise AuditError(f"unknown audit outcome {entry.outcome!r}; known: {sorted(OUTCOMES)}")
    at = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    details = {str(k): str(v)[:DETAIL_MAX_CHARS] for k, v in entry.details.items()}
    details["outcome"] = entry.outcome
    return {
        "audit_id": str(uuid.uuid4()),
        "at": at,
        "actor": entry.actor,
        "action": entry.action,
        "subject": mask_token(entry.subject) if entry.subject else "",
        "subject_ref": subject_ref(entry.subject),
        "scope": entry.scope,
        "details": details,
        "origin": entry.origin,
    }


def write_audit(writer: Writer, entry: AuditEntry, *, now_ms: int | None = None) -> str:
    """Insert one audit row through ``writer``; returns its ``audit_id``. Errors propagate:
    the caller must not go on with the action when this raises."""
    row = audit_row(entry, now_ms=now_ms)
    writer.write(TABLE, [row])
    return str(row["audit_id"])


class AuditUnavailable(RuntimeError):
    """Neither ClickHouse nor the local spool took an audit row: the action must not go on."""


class AuditTrail:
    """Audit rows of a long-running process, never silently lost.

    ``record`` inserts the row into ClickHouse; when that fails (an outage, a missing table)
    the row is appended to this process's spool file ``<spool_dir>/<role>-<pid>-<n>.jsonl`` and
    fsync'd before ``record`` returns, and for ``retry_s`` after a failure rows go straight to
    the spool (a dead server is not asked on every click). ``drain`` — called every few seconds
    by the owner — inserts the spooled rows and empties the file, and also adopts the spool
    files of processes that are gone (a file nobody holds the ``flock`` of). When the spool
    cannot be written either (no directory, disk full) ``record`` raises ``AuditUnavailable``.

    A row is at least once in ``audit_log``: a crash between a drain's insert and the emptying
    of the file inserts it again with the same ``audit_id`` (readers take one row per id).
    """

    def __init__(
        self,
        connect: Callable[[], Writer],
        spool_dir: str | Path,
        role: str,
        *,
        owns_connection: bool = True,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._owns = owns_connection
        self._writer: Writer | None = None
        self.spool_dir = Path(spool_dir)
        self.role = role
        self._retry_s = retry_s
        self._clock = clock
        self._down_until = 0.0
        self._lock = threading.RLock()
        self._spool: IO[str] | None = None
        self._spool_path: Path | None = None
        self.pending = 0  # rows in this process's spool file
        self.spooled = 0  # rows ever spooled (a counter for /healthz and tests)
        self.written = 0  # rows inserted into ClickHouse, directly or by a drain

    def __repr__(self) -> str:
        return f"AuditTrail({self.role!r}, spool={str(self.spool_dir)!r})"

    # -- writing -----------------------------------------------------------------------------
    def record(self, entry: AuditEntry, *, now_ms: int | None = None) -> str:
        """Write the audit row of ``entry`` (ClickHouse, else the spool); its ``audit_id``."""
        row = audit_row(entry, now_ms=now_ms)
        with self._lock:
            if self._clock() >= self._down_until and self._insert([row]):
                return str(row["audit_id"])
            self._append(row)
        return str(row["audit_id"])

    def _insert(self, rows: list[dict[str, Any]]) -> bool:
        try:
            if self._writer is None:
                self._writer = self._connect()
            self._writer.write(TABLE, rows)
        except Exception as err:  # any failure: the row goes to the spool, never lost
            log.warning(
                "审计日志写入失败，暂存本地 audit_log insert failed (%s: %s); spooling to %s",
                type(err).__name__,
                err,
                self.spool_dir,
            )
            self._down_until = self._clock() + self._retry_s
            self._drop_writer()
            return False
        self.written += len(rows)
        return True

    def _drop_writer(self) -> None:
        if self._writer is not None and self._owns:
            with contextlib.suppress(Exception):
                self._writer.close()
        if self._owns:
            self._writer = None

    def _append(self, row: dict[str, Any]) -> None:
        try:
            spool = self._own_spool()
            spool.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
            spool.flush()
            os.fsync(spool.fileno())
        except OSError as err:
            log.error("审计日志无法暂存 audit row can be neither inserted nor spooled: %s", err)
            raise AuditUnavailable(
                f"audit_log unreachable and spool {self.spool_dir} not writable: {err}"
            ) from err
        self.pending += 1
        self.spooled += 1

    def _own_spool(self) -> IO[str]:
        if self._spool is None:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            for n in range(1000):
                path = self.spool_dir / f"{self.role}-{os.getpid()}-{n}.jsonl"
                handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for life
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    handle.close()
                    continue
                self._spool, self._spool_path = handle, path
                break
            else:
                raise OSError(f"no free spool file name in {self.spool_dir}")
        assert self._spool is not None
        return self._spool

    # -- replaying -----------------------------------------------------------------------------
    def drain(self) -> int:
        """Insert every spooled row (own file, then files of processes that are gone); the
        number inserted. Rows stay spooled while ClickHouse does not take them."""
        moved = 0
        with self._lock:
            if self._spool is not None and self.pending:
                self._spool.seek(0)
                rows = _rows_of(self._spool.read())
                if rows and not self._insert(rows):
                    return moved
                self._spool.seek(0)
                self._spool.truncate()
                self._spool.flush()
                os.fsync(self._spool.fileno())
                moved += len(rows)
                self.pending = 0
                self._down_until = 0.0
            moved += self._adopt_orphans()
        if moved:
            log.info("审计日志补写 %d spooled audit rows written to audit_log", moved)
        return moved

    def _adopt_orphans(self) -> int:
        if not self.spool_dir.is_dir():
            return 0
        moved = 0
        for path in sorted(self.spool_dir.glob("*.jsonl")):
            if path == self._spool_path:
                continue
            try:
                handle = open(path, "r+", encoding="utf-8")  # noqa: SIM115 - closed below
            except OSError:
                continue
            with handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # its process is alive and drains it itself
                rows = _rows_of(handle.read())
                if rows and not self._insert(rows):
                    return moved
                path.unlink()
                moved += len(rows)
        return moved

    def close(self) -> None:
        with self._lock:
            if self._spool is not None:
                if not self.pending and self._spool_path is not None:
                    with contextlib.suppress(OSError):
                        self._spool_path.unlink()
                self._spool.close()  # releases the flock: another process may adopt it
                self._spool = None
            self._drop_writer()


def _rows_of(text: str) -> list[dict[str, Any]]:
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line torn by a crash mid-write: the action was refused then
            log.error("skipping a torn line in the audit spool: %r", line[:80])
    return rows
