"""Who and where for the audit log: the staff member running a tool and the machine (and SSH
client, if any) it runs from. The row itself is written by ``sinks.audit.write_audit``."""

from __future__ import annotations

import getpass
import os
import socket
import sys
from collections.abc import Mapping

from fangxian.core.settings import Settings
from sinks.audit import AuditEntry, AuditTrail, AuditUnavailable


def staff_entry(
    settings: Settings,
    action: str,
    *,
    subject: str | None = None,
    scope: str = "",
    details: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> AuditEntry:
    """An audit entry for a CLI action: actor = ``FANGXIAN_STAFF_ID`` or the OS login, origin
    = host name, plus the SSH client's address when the tool runs in an SSH session."""
    env = os.environ if env is None else env
    actor = settings.staff_id or env.get("USER") or env.get("LOGNAME") or _login()
    origin = f"cli@{socket.gethostname()}"
    ssh = env.get("SSH_CLIENT", "").split()
    if ssh:
        origin += f" from {ssh[0]}"
    return AuditEntry(
        actor=actor,
        action=action,
        origin=origin,
        subject=subject,
        scope=scope,
        details=dict(details or {}),
    )


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's random uid)
        return f"uid:{os.getuid()}"


def record_cli_action(settings: Settings, entry: AuditEntry, *, nothing_done: str) -> bool:
    """Write ``entry`` before a CLI action that changes something: into ClickHouse, else into
    the audit spool the console replays (``FANGXIAN_AUDIT_SPOOL_DIR``). False (and the reason
    on stderr, with ``nothing_done``) when neither takes it: the caller must not act."""
    from sinks import clickhouse_options, open_writer

    trail = AuditTrail(
        lambda: open_writer(
            settings.clickhouse_url,
            connect_timeout_s=settings.connect_timeout_s,
            **clickhouse_options(settings),
        ),
        settings.audit_spool_dir,
        "cli",
        retry_s=0.0,
    )
    try:
        trail.record(entry)
    except AuditUnavailable as err:
        print(f"审计日志不可用 audit log unavailable, {nothing_done}: {err}", file=sys.stderr)
        return False
    finally:
        trail.close()
    if trail.spooled:
        print(
            f"审计记录暂存于 audit row spooled in {settings.audit_spool_dir} (ClickHouse "
            "unreachable); the console writes it to audit_log",
            file=sys.stderr,
        )
    return True
