"""Who and where for the audit log: the staff member running a tool and the machine (and SSH
client, if any) it runs from. The row itself is written by ``sinks.audit.write_audit``."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping

from fangxian.core.settings import Settings
from sinks.audit import AuditEntry


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
