"""Peak resident memory of a process (Linux ``/proc/<pid>/status``) and the synthetic residents
the memory phase loads into the reference tables."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fangxian.core.privacy import Pseudonymiser

_PROC = Path("/proc")
_BENCH_KEY = b"fangxian-bench-not-a-secret"


def parse_status_kb(status_text: str, field: str) -> int | None:
    """The value in kB of ``field`` (``VmHWM``, ``VmRSS``) in a ``/proc/<pid>/status`` text."""
    for line in status_text.splitlines():
        name, _, rest = line.partition(":")
        if name == field:
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                return int(parts[0])
            raise ValueError(f"unexpected {field} line: {line!r}")
    return None


def peak_rss_kb(pid: int | str = "self") -> int | None:
    """``VmHWM`` (peak resident set) of a process in kB; ``None`` when it is gone or unknown."""
    try:
        text = (_PROC / str(pid) / "status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return parse_status_kb(text, "VmHWM")


def kb_to_mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


def synthetic_residents(
    templates: Sequence[dict[str, Any]], count: int, *, household_size: int = 3
) -> Iterator[dict[str, Any]]:
    """``count`` Resident records shaped like ``templates`` (community, status, groups, consent
    cycle through them) with fresh pseudonymous ids, so a memory run can hold a million."""
    if not templates:
        raise ValueError("need at least one template resident")
    token = Pseudonymiser(_BENCH_KEY).token
    for i, template in zip(range(count), itertools.cycle(templates), strict=False):
        yield {
            **template,
            "resident_id": token("bench-resident", str(i)),
            "household_id": token("bench-household", str(i // household_size)),
            "key_groups": list(template["key_groups"]),
        }
