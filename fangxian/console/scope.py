"""Who may see what: a member of staff sees their own community; a street or county officer
(role ``STREET_OFFICE``) sees every community under their area code, characters 3–8 of the
GB 32100 credit code (``fangxian.core.codes.county_code``). The server applies this to every
page, JSON answer, event stream and action; nothing is filtered only in the browser."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fangxian.core.codes import county_code, credit_code_format_ok

OFFICER_ROLES = frozenset({"STREET_OFFICE"})

ROLE_LABELS = {
    "GATE_GUARD": "门岗 gate guard",
    "GRID_WORKER": "网格员 grid worker",
    "COMMUNITY_STAFF": "社区工作人员 community staff",
    "STREET_OFFICE": "街道 street office",
    "MEDICAL": "医务 medical",
    "OTHER": "其他 other",
}


@dataclass(frozen=True)
class StaffEntry:
    """What the console needs of a ``StaffMember`` record (contacts are never read here)."""

    staff_id: str
    community_id: str
    display_name: str
    role: str
    active: bool = True


@dataclass(frozen=True)
class Viewer:
    """The signed-in person and what they may see."""

    staff: StaffEntry

    @property
    def staff_id(self) -> str:
        return self.staff.staff_id

    @property
    def is_officer(self) -> bool:
        return self.staff.role in OFFICER_ROLES

    @property
    def area(self) -> str:
        """The county area code an officer covers ('' for community staff)."""
        if not self.is_officer or not credit_code_format_ok(self.staff.community_id):
            return ""
        return county_code(self.staff.community_id)

    def can_see(self, community_id: str) -> bool:
        if not credit_code_format_ok(community_id):
            return False
        if community_id == self.staff.community_id:
            return True
        return bool(self.area) and county_code(community_id) == self.area

    def visible(self, communities: Iterable[str]) -> list[str]:
        """The communities of ``communities`` this viewer may see (own community first)."""
        seen = {c for c in communities if self.can_see(c)}
        if credit_code_format_ok(self.staff.community_id):
            seen.add(self.staff.community_id)
        own = self.staff.community_id
        return sorted(seen, key=lambda c: (c != own, c))
