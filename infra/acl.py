"""Who may do what on Kafka: the principal → ACL table of docs/topology.md, derived from the
settings' topic names and app id, and its idempotent application (``fangxian acl apply``).

The broker denies everything no ACL allows (``allow.everyone.if.no.acl.found=false``), so this
table is the whole of each principal's rights:

- **device** writes the three event topics — and nothing else: it cannot read a decision,
  touch reference data or forge an alert;
- **decide** reads the events, its internal topics and the reference topics, writes its
  internal topics and the outputs, in transactions whose ids start ``<app_id>-decide-``;
- **sink** reads the event and output topics (``read_committed``), writes nothing to Kafka;
- **dispatch** reads alerts, its reference topics, ``alert.silences`` and ``alert.actions``,
  writes ``alert.actions``;
- **loader** (the operator's tools) writes the reference topics; for ``fangxian silence`` it
  also reads ``reference.staff`` (who may silence) and reads and writes ``alert.silences``;
  **reporter** (``fangxian report --publish``) writes ``reports.daily``;
- **console** (``fangxian console``) reads ``gate.decisions``, ``alerts``, ``alert.actions``,
  ``alert.silences`` and ``reference.staff`` without a group (every instance sees everything),
  writes ``alert.actions`` (its acknowledge / resolve requests) and ``alert.silences``;
- **edge** (``fangxian edge``, the gate devices' way in) writes the three event topics, and
  ``alerts`` and ``dead_letters`` for what only it can see (``EDGE_FALLBACK_DISAGREED``, a
  device payload it could not parse — redacted); reads ``gate.decisions`` (the answer a
  waiting device gets) and the four reference topics its fallback policy reads, all without a
  group. Nothing else: no decide internals, no roster, no ``alert.actions``, no transactions;
- BI tools have no Kafka principal at all; the super user (topics, ACLs) needs no ACL.

A WRITE on a topic implies DESCRIBE (metadata) and, since Kafka 2.8, idempotent production; a
READ implies DESCRIBE; consumers that commit offsets need READ on their group.

Applying converges: ALLOW ACLs of the table's principals that the table does not hold are
deleted (``plan_acls``). Other principals' ACLs and DENY ACLs (removing one would widen access)
are left alone; the super user has no ACLs (``super.users`` in the broker's config).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kafka.errors import KafkaError, NoError

from fangxian.core.kafka_security import kafka_client_kwargs
from fangxian.core.settings import Settings

log = logging.getLogger(__name__)

ANY_HOST = "*"
EVENT_FIELDS = ("gate_scans", "temperature_readings", "health_reports")
OUTPUT_FIELDS = ("gate_decisions", "alerts", "dead_letters")
DECIDE_REFERENCE_FIELDS = ("residents", "passes", "vehicles", "rules")
# the dispatcher's topics (branch `dispatch`): the attribute on Topics, or the contract name
DISPATCH_REFERENCE_TOPICS = {
    "staff": "reference.staff",
    "duty": "reference.duty",
    "escalation": "reference.escalation",
}
ALERT_ACTIONS = ("alert_actions", "alert.actions")
SILENCES = ("silences", "alert.silences")


@dataclass(frozen=True)
class Principals:
    """The Kafka user name of each role (SCRAM users; the principal is ``User:<name>``)."""

    device: str = "device"
    decide: str = "decide"
    sink: str = "sink"
    dispatch: str = "dispatch"
    loader: str = "loader"
    reporter: str = "reporter"
    console: str = "console"
    edge: str = "edge"

    def roles(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Grant:
    """Operations one role may do on one resource (a name, or every name with a prefix)."""

    resource: ResourceType
    name: str
    operations: tuple[ACLOperation, ...]
    prefixed: bool = False

    def describe(self) -> str:
        ops = ",".join(op.name for op in self.operations)
        star = "*" if self.prefixed else ""
        return f"{self.resource.name.lower()} {self.name}{star}: {ops}"


@dataclass(frozen=True)
class AclTable:
    """role → grants; a role with no grants has no access at all."""

    grants: Mapping[str, tuple[Grant, ...]]
    principals: Principals = field(default_factory=Principals)

    def acls(self) -> list[ACL]:
        """Every grant as kafka-python ALLOW ACLs (one per operation), in table order."""
        users = self.principals.roles()
        out: list[ACL] = []
        for role, grants in self.grants.items():
            principal = f"User:{users[role]}"
            for grant in grants:
                pattern = ResourcePattern(
                    grant.resource,
                    grant.name,
                    ACLResourcePatternType.PREFIXED
                    if grant.prefixed
                    else ACLResourcePatternType.LITERAL,
                )
                out.extend(
                    ACL(principal, ANY_HOST, op, ACLPermissionType.ALLOW, pattern)
                    for op in grant.operations
                )
        return out

    def managed(self) -> set[str]:
        """The principals (``User:<name>``) whose ACLs this table is the whole of."""
        return {f"User:{user}" for user in self.principals.roles().values()}

    def render(self) -> str:
        """The table as text, one line per grant (what ``fangxian acl show`` prints)."""
        users = self.principals.roles()
        lines = []
        for role, grants in self.grants.items():
            lines.append(f"{role} (User:{users[role]})")
            lines.extend(f"  {grant.describe()}" for grant in grants)
        return "\n".join(lines)


def _topic(settings: Settings, attr: str, default: str) -> str:
    """A topic name from ``settings.topics``; for a topic a newer branch adds to Topics, the
    contract name with the same prefix the event topics carry (tests prefix every name)."""
    name = getattr(settings.topics, attr, None)
    if isinstance(name, str):
        return name
    prefix = settings.topics.gate_scans.removesuffix("gate.scans")
    return prefix + default


def _internal(settings: Settings, prop: str, suffix: str) -> str:
    name = getattr(settings, prop, None)
    return name if isinstance(name, str) else f"{settings.app_id}-{suffix}"


R, W = ACLOperation.READ, ACLOperation.WRITE


def acl_table(settings: Settings, principals: Principals | None = None) -> AclTable:
    """The ACL table for ``settings`` (topic names, app id): see the module doc."""
    t = settings.topics
    events = [getattr(t, f) for f in EVENT_FIELDS]
    outputs = [getattr(t, f) for f in OUTPUT_FIELDS]
    decide_refs = [getattr(t, f) for f in DECIDE_REFERENCE_FIELDS]
    dispatch_refs = [_topic(settings, a, d) for a, d in DISPATCH_REFERENCE_TOPICS.items()]
    alert_actions = _topic(settings, *ALERT_ACTIONS)
    silences = _topic(settings, *SILENCES)
    staff = _topic(settings, "staff", DISPATCH_REFERENCE_TOPICS["staff"])
    decide_events = _internal(settings, "decide_events_topic", "decide-events")
    decide_changelog = _internal(settings, "decide_changelog_topic", "decide-changelog")
    decide_reroute = _internal(settings, "decide_reroute_topic", "decide-reroute")

    def topics(names: Iterable[str], *ops: ACLOperation) -> list[Grant]:
        return [Grant(ResourceType.TOPIC, name, ops) for name in names]

    def group(suffix: str) -> Grant:
        return Grant(ResourceType.GROUP, f"{settings.app_id}-{suffix}", (R,))

    grants: dict[str, tuple[Grant, ...]] = {
        "device": tuple(topics(events, W)),
        "decide": (
            *topics(events, R),
            *topics([decide_events, decide_reroute, decide_changelog], R, W),
            *topics(decide_refs, R),
            *topics(outputs, W),
            group("decide"),
            Grant(
                ResourceType.TRANSACTIONAL_ID,
                f"{settings.app_id}-decide-",
                (W, ACLOperation.DESCRIBE),
                prefixed=True,
            ),
        ),
        # `<app>-sink-actions`: the alert.actions → ClickHouse writer (streams/dispatch/
        # action_sink.py), run by the sink stage or inside the dispatcher (with_action_sink)
        "sink": (
            *topics([*events, *outputs, alert_actions], R),
            group("sink"),
            group("sink-actions"),
        ),
        "dispatch": (
            *topics([t.alerts, *dispatch_refs, silences], R),
            *topics([alert_actions], R, W),
            group("dispatch"),
            group("sink-actions"),
        ),
        # `fangxian load`; `fangxian silence` checks the staff member's role and writes
        "loader": (
            *topics([*decide_refs, *dispatch_refs], W),
            *topics([staff], R),
            *topics([silences], R, W),
        ),
        "reporter": tuple(topics([t.reports_daily], W)),
        # the staff console: live feed and staff directory without a group, ack/resolve requests
        "console": (
            *topics([t.gate_decisions, t.alerts, alert_actions, staff, silences], R),
            *topics([alert_actions, silences], W),
        ),
        # the gate edge: devices' events in, their decisions back, the fallback's replica;
        # its own alert (EDGE_FALLBACK_DISAGREED) and redacted dead letters
        "edge": (
            *topics([*events, t.alerts, t.dead_letters], W),
            *topics([t.gate_decisions, *decide_refs], R),
        ),
    }
    return AclTable(grants=grants, principals=principals or Principals())


def describe_acl(acl: ACL) -> str:
    """One ACL as a line a person reads: ``User:console topic alerts READ``."""
    pattern = acl.resource_pattern
    star = "*" if pattern.pattern_type == ACLResourcePatternType.PREFIXED else ""
    text = (
        f"{acl.principal} {ResourceType(pattern.resource_type).name.lower()} "
        f"{pattern.resource_name}{star} {ACLOperation(acl.operation).name}"
    )
    if acl.host != ANY_HOST:
        text += f" host={acl.host}"
    if acl.permission_type != ACLPermissionType.ALLOW:
        text += f" {ACLPermissionType(acl.permission_type).name}"
    return text


@dataclass(frozen=True)
class AclPlan:
    """What applying a table changes: ACLs to create, and stale ACLs to delete."""

    add: list[ACL]
    remove: list[ACL]


def plan_acls(table: AclTable, present: Iterable[ACL]) -> AclPlan:
    """The changes that make the broker's ACLs (``present``) converge on ``table``.

    Only ALLOW ACLs of the table's own principals are ever removed: another principal's ACLs
    are someone else's business, and deleting a DENY would widen access, not narrow it.
    """
    wanted = table.acls()
    have = set(present)
    keep = set(wanted)
    managed = table.managed()
    stale = [
        acl
        for acl in have
        if acl.principal in managed
        and acl.permission_type == ACLPermissionType.ALLOW
        and acl not in keep
    ]
    return AclPlan(
        add=[acl for acl in wanted if acl not in have],
        remove=sorted(stale, key=describe_acl),
    )


@dataclass
class ApplyResult:
    added: list[ACL] = field(default_factory=list)
    removed: list[ACL] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    dry_run: bool = False


class AclApplyError(RuntimeError):
    """The broker refused an ACL or a credential (the message names which)."""


def apply_acls(
    admin_settings: Settings,
    table: AclTable,
    *,
    passwords: Mapping[str, str] | None = None,
    iterations: int = 8192,
    wait_s: float = 15.0,
    dry_run: bool = False,
) -> ApplyResult:
    """Make the ACLs on the broker ``admin_settings`` reaches (as a super user) converge on
    ``table``, and first upsert the SCRAM-SHA-512 credential of every role in ``passwords``
    (role → password). The table's ACLs that are missing are created; the stale ALLOW ACLs of
    its principals are deleted (``plan_acls``); a second apply changes nothing. With
    ``dry_run`` nothing is changed (no credential either): the result holds the plan.

    Returns once the broker answering DescribeAcls shows the result (ACLs reach a broker's
    authorizer through the metadata log a moment after the controller accepts them), or
    raises AclApplyError after ``wait_s``.
    """
    admin = KafkaAdminClient(
        bootstrap_servers=admin_settings.kafka_bootstrap,
        client_id="fangxian-acl",
        **kafka_client_kwargs(admin_settings),
    )
    try:
        plan = plan_acls(table, _all_acls(admin))
        result = ApplyResult(added=plan.add, removed=plan.remove, dry_run=dry_run)
        if dry_run:
            return result
        users = table.principals.roles()
        if passwords:
            upserts = [
                UserScramCredentialUpsertion(
                    users[role], ScramMechanism.SCRAM_SHA_512, password, iterations=iterations
                )
                for role, password in sorted(passwords.items())
            ]
            errors = admin.alter_user_scram_credentials(upserts)
            failed = {user: msg for user, msg in errors.items() if msg}
            if failed:
                raise AclApplyError(f"SCRAM credentials refused: {failed}")
            result.users = sorted(errors)
        if plan.add:
            response = admin.create_acls(plan.add)
            if response["failed"]:
                raise AclApplyError(f"{len(response['failed'])} ACLs refused: {response['failed']}")
        if plan.remove:
            # each stale ACL is its own exact filter: nothing else can match it
            refused = [
                (describe_acl(acl), error)
                for acl, _matched, error in admin.delete_acls(list(plan.remove))
                if error is not NoError
            ]
            if refused:
                raise AclApplyError(f"{len(refused)} ACL deletions refused: {refused}")
        _wait_until_converged(admin, table.acls(), plan.remove, wait_s)
    except KafkaError as err:
        raise AclApplyError(f"applying ACLs on {admin_settings.kafka_bootstrap}: {err}") from err
    finally:
        admin.close()
    log.info(
        "ACLs added: %d, removed: %d, credentials set: %s",
        len(result.added),
        len(result.removed),
        result.users or "none",
    )
    return result


def _all_acls(admin: KafkaAdminClient) -> list[ACL]:
    acls, _ = admin.describe_acls(
        ACLFilter(
            principal=None,
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(
                ResourceType.ANY, None, ACLResourcePatternType.ANY
            ),
        )
    )
    return list(acls)


def _wait_until_converged(
    admin: KafkaAdminClient, wanted: list[ACL], removed: list[ACL], wait_s: float
) -> None:
    deadline = time.monotonic() + wait_s
    want, gone = set(wanted), set(removed)
    while True:
        present = set(_all_acls(admin))
        missing, lingering = want - present, gone & present
        if not missing and not lingering:
            return
        if time.monotonic() > deadline:
            raise AclApplyError(
                f"{len(missing)} ACLs not in effect, {len(lingering)} not yet deleted after "
                f"{wait_s:.0f} s"
            )
        time.sleep(0.1)


def describe_acls(admin_settings: Settings) -> list[ACL]:
    """Every ACL on the broker."""
    admin = KafkaAdminClient(
        bootstrap_servers=admin_settings.kafka_bootstrap,
        client_id="fangxian-acl",
        **kafka_client_kwargs(admin_settings),
    )
    try:
        return _all_acls(admin)
    finally:
        admin.close()
