"""Inhibition: while an alert of a source type is active, the alerts it makes redundant are
held back (Alertmanager's inhibit rules) — a DEVICE_SILENT on a gate holds back that gate's
FEVER_RECHECK_MISSED (of course nobody was rechecked: the thermometer is off), a
QUARANTINE_BREACH or CLUSTER_SUSPECTED of a person holds back the lesser alerts of the same
person. A held-back alert is recorded SILENCED (``muted_by=inhibition``, the rule and the
alert that holds it back), shown in the console and counted in the daily report; it is never
paged and never dropped unseen.

Rules are configuration (TOML; ``Settings.dispatch_inhibit_file``, the built-in ``DEFAULT_RULES``
when it is empty, none at all when it is ``none``)::

    [[rule]]
    name = "device-silent-holds-recheck-missed"
    source_types = ["DEVICE_SILENT"]
    target_types = ["FEVER_RECHECK_MISSED"]   # empty or absent: any type
    target_lesser = false   # true: only targets of a lower severity than the source
    equal = ["gate_id"]     # of gate_id, device_id, subject_id; the community always
    active_s = 7200         # a source holds back for this long after it was taken on

Types are matched by name (a string), so a rule may name a type the contract adds later.
A source is *active* from the moment the dispatcher took it on (its ROUTED or SILENCED record)
for ``active_s``, until it is RESOLVED; acknowledging it does not end it (the device is still
off). A source that is itself silenced or held back still holds back. An alert never holds
back itself, and a rule never holds back alerts of its own source types. An alert without a
value for one of the ``equal`` labels (no subject) is never held back by that rule: a missing
label is not a match.

The subject is pseudonymous already; the dispatcher still keeps only a keyed digest of it
(``subject_key``), which is what its ROUTED records carry so a restart rebuilds the sources.

Pure: no clock, no I/O (``load_rules`` reads the file it is given).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from streams.dispatch.roster import SEVERITY_RANK

LABELS: Final = ("gate_id", "device_id", "subject_id")
MAX_ACTIVE_S: Final = 7 * 86_400
_TYPE = re.compile(r"[A-Z][A-Z0-9_]{1,63}")
_RULE_KEYS: Final = frozenset(
    {"name", "source_types", "target_types", "target_lesser", "equal", "active_s", "comment"}
)

DEFAULT_TOML: Final = """
# fangxian's built-in inhibition rules (docs/dispatch.md, "Silences and inhibition").

[[rule]]
name = "device-silent-holds-recheck-missed"
# a silent gate device explains its missed rechecks 设备离线时，该门岗的未复测预警暂不推送
source_types = ["DEVICE_SILENT"]
target_types = ["FEVER_RECHECK_MISSED"]
equal = ["gate_id"]
active_s = 7200

[[rule]]
name = "quarantine-or-cluster-holds-lesser-alerts-of-the-person"
# one page for the person, the most serious one 违反隔离或疑似聚集的人员，较低级别预警暂不推送
source_types = ["QUARANTINE_BREACH", "CLUSTER_SUSPECTED"]
target_lesser = true
equal = ["subject_id"]
active_s = 86400
"""


class InhibitConfigError(ValueError):
    """The inhibition rules file is not valid (the message names the rule and the key)."""


@dataclass(frozen=True)
class InhibitRule:
    name: str
    source_types: frozenset[str]
    equal: tuple[str, ...]
    active_s: int
    target_types: frozenset[str] = frozenset()  # empty: any type
    target_lesser: bool = False
    comment: str = ""

    def is_target(self, alert_type: str, severity: str, source_severity: str) -> bool:
        if alert_type in self.source_types:
            return False
        if self.target_types and alert_type not in self.target_types:
            return False
        return not self.target_lesser or SEVERITY_RANK.get(severity, 0) < SEVERITY_RANK.get(
            source_severity, 0
        )


def _types(rule: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
    values = rule.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InhibitConfigError(f"{where}: {key} must be a list of alert type names")
    bad = [v for v in values if not _TYPE.fullmatch(v)]
    if bad:
        raise InhibitConfigError(f"{where}: {key} has names that are not alert types: {bad}")
    return frozenset(values)


def parse_rules(text: str) -> tuple[InhibitRule, ...]:
    """The rules of a TOML text; raises ``InhibitConfigError`` naming what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InhibitConfigError(f"not valid TOML: {err}") from err
    unknown = set(data) - {"rule"}
    if unknown:
        raise InhibitConfigError(f"unknown top-level keys {sorted(unknown)} (only [[rule]])")
    rules: list[InhibitRule] = []
    for i, raw in enumerate(data.get("rule", []), start=1):
        where = f"rule {i} ({raw.get('name', '?')})"
        extra = set(raw) - _RULE_KEYS
        if extra:
            raise InhibitConfigError(f"{where}: unknown keys {sorted(extra)}")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InhibitConfigError(f"{where}: every rule needs a name")
        if any(r.name == name for r in rules):
            raise InhibitConfigError(f"{where}: the name {name!r} is used twice")
        sources = _types(raw, "source_types", where)
        if not sources:
            raise InhibitConfigError(f"{where}: source_types is empty")
        targets = _types(raw, "target_types", where)
        lesser = raw.get("target_lesser", False)
        if not isinstance(lesser, bool):
            raise InhibitConfigError(f"{where}: target_lesser must be true or false")
        if not targets and not lesser:
            raise InhibitConfigError(
                f"{where}: name target_types or set target_lesser = true (a rule that holds "
                "back every other alert is refused)"
            )
        equal = raw.get("equal", [])
        if (
            not isinstance(equal, list)
            or not equal
            or not all(isinstance(e, str) and e in LABELS for e in equal)
        ):
            raise InhibitConfigError(
                f"{where}: equal must list one or more of {', '.join(LABELS)} (a rule over a "
                "whole community is refused)"
            )
        active = raw.get("active_s")
        if isinstance(active, bool) or not isinstance(active, int):
            active = -1
        if not 0 < active <= MAX_ACTIVE_S:
            raise InhibitConfigError(f"{where}: active_s must be 1..{MAX_ACTIVE_S} seconds")
        rules.append(
            InhibitRule(
                name=name.strip(),
                source_types=sources,
                equal=tuple(sorted(set(equal), key=LABELS.index)),
                active_s=active,
                target_types=targets,
                target_lesser=lesser,
                comment=str(raw.get("comment", "")),
            )
        )
    return tuple(rules)


DEFAULT_RULES: Final = parse_rules(DEFAULT_TOML)


def load_rules(path: str) -> tuple[InhibitRule, ...]:
    """``""``: the built-in rules; ``"none"``: no inhibition; else the TOML file at ``path``."""
    if not path:
        return DEFAULT_RULES
    if path.strip().lower() == "none":
        return ()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InhibitConfigError(f"{path}: cannot read it ({err.strerror})") from err
    try:
        return parse_rules(text)
    except InhibitConfigError as err:
        raise InhibitConfigError(f"{path}: {err}") from err


@dataclass(frozen=True)
class Source:
    """An alert that holds others back, while ``since_ms <= now < until_ms``."""

    alert_id: str
    alert_type: str
    severity: str
    since_ms: int
    until_ms: int


@dataclass(frozen=True)
class Held:
    """Why an alert is held back: the rule and the source alert."""

    rule: InhibitRule
    source: Source

    def detail(self) -> dict[str, str]:
        """What the SILENCED record of the held-back alert says."""
        return {
            "muted_by": "inhibition",
            "inhibited_by": self.source.alert_id,
            "rule": self.rule.name,
            "reason": (
                f"被 {self.source.alert_type} 抑制 inhibited by {self.source.alert_id} "
                f"({self.source.alert_type}, rule {self.rule.name})"
            ),
        }


_IndexKey = tuple[str, str, tuple[str, ...]]  # (rule name, community, values of `equal`)


@dataclass
class Inhibitor:
    """The active sources of the partitions a dispatcher holds, indexed by rule, community and
    the rule's ``equal`` labels; fed from the fold (``observe`` / ``end``)."""

    rules: tuple[InhibitRule, ...] = DEFAULT_RULES
    key: bytes = b""
    _sources: dict[_IndexKey, dict[str, Source]] = field(default_factory=dict)
    _keys_of: dict[str, list[_IndexKey]] = field(default_factory=dict)

    @property
    def uses_subject(self) -> bool:
        return any("subject_id" in r.equal for r in self.rules)

    def subject_key(self, subject_id: str | None) -> str:
        """A keyed digest of the (already pseudonymous) subject: equal subjects, equal keys."""
        if not subject_id or not self.uses_subject:
            return ""
        mac = hmac.new(self.key or b"fangxian", b"inhibit|" + subject_id.encode(), hashlib.sha256)
        return mac.hexdigest()[:20]

    def __len__(self) -> int:
        return sum(len(v) for v in self._sources.values())

    @staticmethod
    def _values(rule: InhibitRule, labels: Mapping[str, str]) -> tuple[str, ...] | None:
        values = tuple(labels.get(name) or "" for name in rule.equal)
        return None if not all(values) else values

    def observe(
        self,
        alert_id: str,
        community_id: str,
        alert_type: str,
        severity: str,
        labels: Mapping[str, str],
        at_ms: int,
    ) -> None:
        """An alert taken on (ROUTED, or SILENCED at once) at ``at_ms``: if it is a source of
        a rule, it holds back from now on (idempotent)."""
        if alert_id in self._keys_of:
            return
        keys = []
        for rule in self.rules:
            if alert_type not in rule.source_types:
                continue
            values = self._values(rule, labels)
            if values is None:
                continue
            key = (rule.name, community_id, values)
            source = Source(alert_id, alert_type, severity, at_ms, at_ms + rule.active_s * 1000)
            self._sources.setdefault(key, {})[alert_id] = source
            keys.append(key)
        if keys:
            self._keys_of[alert_id] = keys

    def end(self, alert_id: str) -> None:
        """The source was RESOLVED: it holds nothing back any more."""
        for key in self._keys_of.pop(alert_id, []):
            held = self._sources.get(key)
            if held is not None:
                held.pop(alert_id, None)
                if not held:
                    del self._sources[key]

    def holding(
        self,
        alert_id: str,
        community_id: str,
        alert_type: str,
        severity: str,
        labels: Mapping[str, str],
        now_ms: int,
    ) -> Held | None:
        """What holds this alert back at ``now_ms`` (the first rule in file order; of its
        sources the earliest taken on, then the lowest id), or None."""
        for rule in self.rules:
            values = self._values(rule, labels)
            if values is None:
                continue
            sources = self._sources.get((rule.name, community_id, values))
            if not sources:
                continue
            active = [
                s
                for s in sources.values()
                if s.alert_id != alert_id
                and s.since_ms <= now_ms < s.until_ms
                and rule.is_target(alert_type, severity, s.severity)
            ]
            if active:
                return Held(rule, min(active, key=lambda s: (s.since_ms, s.alert_id)))
        return None

    def prune(self, now_ms: int) -> int:
        """Forget sources whose time is over; returns how many."""
        count = 0
        for key in list(self._sources):
            sources = self._sources[key]
            for alert_id in [a for a, s in sources.items() if s.until_ms <= now_ms]:
                del sources[alert_id]
                count += 1
                keys = self._keys_of.get(alert_id, [])
                if key in keys:
                    keys.remove(key)
                if not keys:
                    self._keys_of.pop(alert_id, None)
            if not sources:
                del self._sources[key]
        return count
