"""Reading the on-duty roster files (``fangxian load staff|duty|escalation``): validated with
line numbers (``roster_files``), staff contacts sealed with ``FANGXIAN_ROSTER_KEY`` here, at the
ingest point, before anything is produced."""

from __future__ import annotations

import time
from pathlib import Path

from fangxian.core.settings import Settings
from fangxian.ingest.roster_files import RosterLoad, load_duty, load_escalation, load_staff
from schemas import contract


def read_roster(kind: str, path: Path, settings: Settings) -> RosterLoad:
    from sinks.channels.config import load_channels
    from streams.dispatch.contacts import ContactBox

    now = int(time.time() * 1000)
    if kind == "staff":
        try:
            box = ContactBox(settings.roster_key)
        except ValueError as err:
            raise SystemExit(str(err)) from None
        return load_staff(path, box, now_ms=now)
    if kind == "duty":
        return load_duty(path, alert_types=contract.ALERT_TYPES, now_ms=now)
    channels = settings.dispatch_channels_file
    names = set(load_channels(channels)) if channels else None
    return load_escalation(path, channels=names, now_ms=now)
