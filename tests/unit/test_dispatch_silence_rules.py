"""Silences and inhibition, pure (issue 22 item 1): matchers, time, the rules file, and the
dispatcher's fold muting alerts — recorded SILENCED with the reason, never paged, never
dropped — with an injected clock and a restore from the action log."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import Codec
from streams.dispatch.inhibition import (
    DEFAULT_RULES,
    InhibitConfigError,
    Inhibitor,
    load_rules,
    parse_rules,
)
from streams.dispatch.machine import DispatchMachine, request_record
from streams.dispatch.silences import (
    MAX_DURATION_S,
    Silence,
    SilenceBook,
    SilenceInvalid,
    expire,
    new_silence,
    parse_duration_s,
    split_values,
)
from tests.unit.test_dispatch_machine import COMMUNITY, MIN, alert, local_ms, roster, step_through

OTHER = "91350100M000200Y4X"
T0 = local_ms(15, 10)
HOUR = 3_600_000


def silence(**changes: Any) -> Silence:
    asked: dict[str, Any] = {
        "community_id": COMMUNITY,
        "gate_ids": ["east-gate"],
        "device_ids": [],
        "alert_types": [],
        "duration_s": 3600,
        "comment": "东门测温枪送修",
        "created_by": "st-office",
        "now_ms": T0,
        "via": "console",
        "silence_id": "s-1",
    }
    asked.update(changes)
    return new_silence(**asked)


# -- matchers and time -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("matchers", "alert_fields", "matches"),
    [
        pytest.param(
            {"gate_ids": ["east-gate"]},
            (COMMUNITY, "east-gate", "gun-1", "FEVER_RECHECK_MISSED"),
            True,
            id="gate matcher: any device and type at that gate",
        ),
        pytest.param(
            {"gate_ids": ["east-gate"]},
            (COMMUNITY, "west-gate", "gun-1", "FEVER_RECHECK_MISSED"),
            False,
            id="another gate",
        ),
        pytest.param(
            {"gate_ids": ["east-gate"]},
            (OTHER, "east-gate", "gun-1", "FEVER_RECHECK_MISSED"),
            False,
            id="a gate of the same name in another community",
        ),
        pytest.param(
            {"gate_ids": ["east-gate"]},
            (COMMUNITY, None, None, "REPORT_OVERDUE"),
            False,
            id="an alert without a gate never matches a gate matcher",
        ),
        pytest.param(
            {"gate_ids": [], "device_ids": ["gun-1"], "alert_types": ["FEVER_RECHECK_MISSED"]},
            (COMMUNITY, "east-gate", "gun-1", "FEVER_RECHECK_MISSED"),
            True,
            id="device and type both match",
        ),
        pytest.param(
            {"gate_ids": [], "device_ids": ["gun-1"], "alert_types": ["FEVER_RECHECK_MISSED"]},
            (COMMUNITY, "east-gate", "gun-1", "FEVER_CONFIRMED"),
            False,
            id="device matches, type does not: every matcher must",
        ),
        pytest.param(
            {"gate_ids": ["east-gate", "west-gate"], "alert_types": ["cluster_suspected"]},
            (COMMUNITY, "west-gate", None, "CLUSTER_SUSPECTED"),
            True,
            id="one of several gates; a type named before the contract has it (case-folded)",
        ),
    ],
)
def test_matchers(matchers: dict[str, Any], alert_fields: tuple[Any, ...], matches: bool) -> None:
    assert silence(**matchers).matches(*alert_fields) is matches


@pytest.mark.parametrize(
    ("at", "state"),
    [
        pytest.param(T0 - 1, "pending", id="a millisecond before it starts"),
        pytest.param(T0, "active", id="from its start"),
        pytest.param(T0 + HOUR - 1, "active", id="the last millisecond"),
        pytest.param(T0 + HOUR, "expired", id="ends_at is exclusive: it ended by itself"),
    ],
)
def test_a_silence_is_active_from_its_start_until_its_end(at: int, state: str) -> None:
    s = silence()
    assert s.state(at) == state
    assert s.active_at(at) is (state == "active")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param(
            {"gate_ids": [], "device_ids": [], "alert_types": []},
            "a whole community is never silenced",
            id="no matcher at all",
        ),
        pytest.param({"duration_s": 0}, "duration", id="no duration"),
        pytest.param({"duration_s": MAX_DURATION_S + 1}, "duration", id="longer than 30 days"),
        pytest.param({"comment": "   "}, "needs a reason", id="no reason"),
        pytest.param({"comment": "x" * 301}, "at most 300", id="a reason too long"),
        pytest.param({"alert_types": ["发热"]}, "not alert type names", id="not a type name"),
        pytest.param({"community_id": "not-a-code"}, "community code", id="bad community"),
        pytest.param({"starts_at": T0 - HOUR}, "in the past", id="starting an hour ago"),
        pytest.param({"created_by": ""}, "who silences", id="nobody named"),
    ],
)
def test_a_silence_that_cannot_be_created(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SilenceInvalid, match=message):
        silence(**changes)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("90s", 90, id="seconds"),
        pytest.param("30m", 1800, id="minutes"),
        pytest.param("4h", 14400, id="hours"),
        pytest.param("3d", 259200, id="days"),
        pytest.param(" 600 ", 600, id="plain seconds"),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration_s(text) == seconds


def test_bad_duration_and_matcher_lists() -> None:
    with pytest.raises(SilenceInvalid):
        parse_duration_s("2 weeks")
    assert split_values("east-gate, west-gate，north") == ["east-gate", "west-gate", "north"]
    assert split_values(["a b", "c"]) == ["a", "b", "c"]


def test_the_record_round_trips_through_the_contract() -> None:
    s = silence(device_ids=["gun-1"], alert_types=["FEVER_RECHECK_MISSED"])
    codec = Codec()
    record = codec.decode("Silence", codec.encode("Silence", s.to_record()))
    book = SilenceBook()
    book.apply(s.silence_id, record)
    assert book.silences[s.silence_id] == s


def test_book_latest_record_wins_a_tombstone_removes_and_ended_ones_are_pruned() -> None:
    book = SilenceBook()
    s = silence()
    book.apply("s-1", s.to_record())
    assert book.matching(COMMUNITY, "east-gate", None, "X_Y", T0) == s
    ended = expire(s, "st-street", T0 + 10 * MIN)
    assert (ended.ends_at, ended.updated_by, ended.created_by) == (
        T0 + 10 * MIN,
        "st-street",
        "st-office",
    )
    book.apply("s-1", ended.to_record())  # the same id again: latest wins
    assert book.matching(COMMUNITY, "east-gate", None, "X_Y", T0 + 10 * MIN) is None
    assert [x.silence_id for x in book.of_communities([COMMUNITY], T0 + 11 * MIN)] == ["s-1"]
    with pytest.raises(SilenceInvalid, match="already ended"):
        expire(ended, "st-office", T0 + 11 * MIN)
    assert book.prune(T0 + 10 * MIN + 86_400_000) == 1 and len(book) == 0
    book.apply("s-2", silence(silence_id="s-2").to_record())
    book.apply("s-2", None)
    assert len(book) == 0


def test_of_several_silences_every_instance_names_the_same_one() -> None:
    book = SilenceBook()
    for sid, hours in (("b", 2), ("a", 2), ("c", 1)):
        book.apply(sid, silence(silence_id=sid, duration_s=hours * 3600).to_record())
    found = book.matching(COMMUNITY, "east-gate", None, "DEVICE_SILENT", T0)
    assert found is not None and found.silence_id == "a", "ends last, then lowest id"


# -- inhibition rules ----------------------------------------------------------------------------
def test_the_built_in_rules_are_the_issues_two() -> None:
    by_name = {r.name: r for r in DEFAULT_RULES}
    device = by_name["device-silent-holds-recheck-missed"]
    assert (device.source_types, device.target_types, device.equal) == (
        frozenset({"DEVICE_SILENT"}),
        frozenset({"FEVER_RECHECK_MISSED"}),
        ("gate_id",),
    )
    person = by_name["quarantine-or-cluster-holds-lesser-alerts-of-the-person"]
    assert person.source_types == frozenset({"QUARANTINE_BREACH", "CLUSTER_SUSPECTED"})
    assert person.target_lesser and person.equal == ("subject_id",)
    assert load_rules("") == DEFAULT_RULES and load_rules("none") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[[rule]\n", "not valid TOML", id="not TOML"),
        pytest.param(
            '[[rule]]\nsource_types=["A_B"]\ntarget_types=["C_D"]\nequal=["gate_id"]\n'
            "active_s=60\n",
            "needs a name",
            id="no name",
        ),
        pytest.param(
            '[[rule]]\nname="x"\nsource_types=["A_B"]\nequal=["gate_id"]\nactive_s=60\n',
            "target_lesser",
            id="no target: would hold back everything",
        ),
        pytest.param(
            '[[rule]]\nname="x"\nsource_types=["A_B"]\ntarget_types=["C_D"]\nactive_s=60\n',
            "equal must list",
            id="no equal labels: a whole community",
        ),
        pytest.param(
            '[[rule]]\nname="x"\nsource_types=["A_B"]\ntarget_types=["C_D"]\n'
            'equal=["resident_id"]\nactive_s=60\n',
            "equal must list",
            id="an unknown label",
        ),
        pytest.param(
            '[[rule]]\nname="x"\nsource_types=["A_B"]\ntarget_types=["C_D"]\n'
            'equal=["gate_id"]\nactive_s=0\n',
            "active_s",
            id="no active time",
        ),
        pytest.param(
            '[[rule]]\nname="x"\nsource_types=["a b"]\ntarget_types=["C_D"]\n'
            'equal=["gate_id"]\nactive_s=60\n',
            "not alert types",
            id="a bad type name",
        ),
        pytest.param(
            '[[rule]]\nname="x"\nsource_types=["A_B"]\ntarget_types=["C_D"]\n'
            'equal=["gate_id"]\nactive_s=60\nsevere=true\n',
            "unknown keys",
            id="a misspelt key",
        ),
        pytest.param(
            '[[rule]]\nname="x"\nsource_types=["A_B"]\ntarget_types=["C_D"]\n'
            'equal=["gate_id"]\nactive_s=60\n[[rule]]\nname="x"\nsource_types=["A_B"]\n'
            'target_types=["C_D"]\nequal=["gate_id"]\nactive_s=60\n',
            "used twice",
            id="a name twice",
        ),
    ],
)
def test_rule_files_that_are_refused(text: str, message: str) -> None:
    with pytest.raises(InhibitConfigError, match=message):
        parse_rules(text)


def test_a_rules_file_on_disk(tmp_path: Any) -> None:
    path = tmp_path / "inhibit.toml"
    path.write_text(
        '[[rule]]\nname = "drift-holds-implausible"\nsource_types = ["DEVICE_DRIFT"]\n'
        'target_types = ["TEMPERATURE_IMPLAUSIBLE"]\nequal = ["device_id"]\nactive_s = 600\n',
        encoding="utf-8",
    )
    (rule,) = load_rules(str(path))
    assert rule.equal == ("device_id",)
    with pytest.raises(InhibitConfigError, match="cannot read"):
        load_rules(str(tmp_path / "missing.toml"))


SOURCE_AT = T0
GATE = {"gate_id": "east-gate", "device_id": "gun-1", "subject_id": ""}


def _inhibitor() -> Inhibitor:
    inhibitor = Inhibitor(DEFAULT_RULES, b"unit-test-key")
    inhibitor.observe("silent", COMMUNITY, "DEVICE_SILENT", "WARNING", GATE, SOURCE_AT)
    person = {"gate_id": "east-gate", "device_id": "", "subject_id": inhibitor.subject_key("p1")}
    inhibitor.observe("breach", COMMUNITY, "QUARANTINE_BREACH", "CRITICAL", person, SOURCE_AT)
    return inhibitor


@pytest.mark.parametrize(
    ("target", "at", "held_by"),
    [
        pytest.param(
            ("m1", COMMUNITY, "FEVER_RECHECK_MISSED", "WARNING", "east-gate", ""),
            SOURCE_AT + MIN,
            "silent",
            id="DEVICE_SILENT holds back the same gate's FEVER_RECHECK_MISSED",
        ),
        pytest.param(
            ("m1", COMMUNITY, "FEVER_RECHECK_MISSED", "WARNING", "west-gate", ""),
            SOURCE_AT + MIN,
            None,
            id="not another gate's",
        ),
        pytest.param(
            ("m1", OTHER, "FEVER_RECHECK_MISSED", "WARNING", "east-gate", ""),
            SOURCE_AT + MIN,
            None,
            id="not another community's gate of the same name",
        ),
        pytest.param(
            ("m1", COMMUNITY, "FEVER_CONFIRMED", "CRITICAL", "east-gate", ""),
            SOURCE_AT + MIN,
            None,
            id="not a type the rule does not name",
        ),
        pytest.param(
            ("m1", COMMUNITY, "FEVER_RECHECK_MISSED", "WARNING", "east-gate", ""),
            SOURCE_AT + 2 * HOUR,
            None,
            id="the source's two hours are over",
        ),
        pytest.param(
            ("m1", COMMUNITY, "FEVER_RECHECK_MISSED", "WARNING", "east-gate", ""),
            SOURCE_AT - 1,
            None,
            id="not before the source was taken on",
        ),
        pytest.param(
            ("y1", COMMUNITY, "HEALTH_CODE_YELLOW", "WARNING", "north-gate", "p1"),
            SOURCE_AT + HOUR,
            "breach",
            id="a breach holds back a lesser alert of the same person, at any gate",
        ),
        pytest.param(
            ("y1", COMMUNITY, "HEALTH_CODE_YELLOW", "WARNING", "north-gate", "p2"),
            SOURCE_AT + HOUR,
            None,
            id="not another person's",
        ),
        pytest.param(
            ("r1", COMMUNITY, "HEALTH_CODE_RED", "CRITICAL", "east-gate", "p1"),
            SOURCE_AT + HOUR,
            None,
            id="not one as severe as the breach",
        ),
        pytest.param(
            ("c1", COMMUNITY, "CLUSTER_SUSPECTED", "WARNING", "east-gate", "p1"),
            SOURCE_AT + HOUR,
            None,
            id="not the rule's own source types (a cluster is its own page)",
        ),
        pytest.param(
            ("n1", COMMUNITY, "REPORT_OVERDUE", "INFO", None, None),
            SOURCE_AT + HOUR,
            None,
            id="no subject: a missing label is not a match",
        ),
    ],
)
def test_what_holds_an_alert_back(target: tuple[Any, ...], at: int, held_by: str | None) -> None:
    inhibitor = _inhibitor()
    alert_id, community, alert_type, severity, gate, subject = target
    labels = {"gate_id": gate or "", "device_id": "", "subject_id": inhibitor.subject_key(subject)}
    held = inhibitor.holding(alert_id, community, alert_type, severity, labels, at)
    assert (held.source.alert_id if held else None) == held_by
    if held:
        assert held.detail()["muted_by"] == "inhibition"
        assert held.detail()["inhibited_by"] == held_by


def test_a_resolved_source_holds_nothing_back_and_over_sources_leave_memory() -> None:
    inhibitor = _inhibitor()
    labels = {"gate_id": "east-gate", "device_id": "", "subject_id": ""}
    inhibitor.end("silent")
    assert inhibitor.holding("m", COMMUNITY, "FEVER_RECHECK_MISSED", "WARNING", labels, T0) is None
    assert len(inhibitor) == 1
    assert inhibitor.prune(SOURCE_AT + 86_400_000) == 1 and len(inhibitor) == 0


def test_the_subject_key_is_keyed_and_never_the_subject() -> None:
    a, b = Inhibitor(DEFAULT_RULES, b"key-a"), Inhibitor(DEFAULT_RULES, b"key-b")
    assert a.subject_key("p1") == a.subject_key("p1") != b.subject_key("p1")
    assert "p1" not in a.subject_key("p1") and a.subject_key(None) == ""
    assert Inhibitor((), b"k").subject_key("p1") == "", "no rule compares subjects: none kept"


# -- the dispatcher's fold -------------------------------------------------------------------------
def machine(*silences: Silence, rules: Any = DEFAULT_RULES) -> DispatchMachine:
    book = SilenceBook()
    for s in silences:
        book.apply(s.silence_id, s.to_record())
    return DispatchMachine(roster(), silences=book, inhibitor=Inhibitor(rules, b"unit-test-key"))


def test_a_matching_alert_is_recorded_silenced_not_paged_and_a_control_is_paged() -> None:
    m = machine(silence(device_ids=["gun-1"], gate_ids=[]))
    (muted,) = m.on_alert(alert("a1", T0, device_id="gun-1"), 0, T0)
    (routed,) = m.on_alert(alert("a2", T0, device_id="gun-2"), 0, T0)
    assert muted["action"] == "SILENCED" and routed["action"] == "ROUTED"
    assert muted["staff_ids"] == ["st-office"], "who silenced"
    assert muted["detail"]["muted_by"] == "silence" and muted["detail"]["silence_id"] == "s-1"
    assert "东门测温枪送修" in muted["detail"]["reason"]
    assert [d.alert_id for d in m.due(T0)] == ["a2"]
    assert m.on_alert(alert("a1", T0, device_id="gun-1"), 0, T0 + MIN) == [], "known: no record"


def test_after_the_silence_ends_by_itself_a_new_matching_alert_is_paged() -> None:
    m = machine(silence(duration_s=600))
    (before,) = m.on_alert(alert("a1", T0), 0, T0 + 599_999)
    (after,) = m.on_alert(alert("a2", T0), 0, T0 + 600_000)
    assert (before["action"], after["action"]) == ("SILENCED", "ROUTED")
    assert [d.alert_id for d in m.due(T0 + 600_000)] == ["a2"]


def test_a_silence_created_later_stops_the_messages_still_to_go() -> None:
    m = machine()
    m.on_alert(alert("a1", T0), 0, T0)
    step_through(m, T0)  # level 1 paged
    m.silence_book.apply("s-1", silence(now_ms=T0 + MIN).to_record())
    m.wake_all()  # what the stage does on any reference record
    (closed,) = m.mute_due(T0 + MIN)
    assert (closed["action"], closed["detail"]["while_open"]) == ("SILENCED", "true")
    assert m.alerts["a1"].status == "SILENCED"
    assert m.due(T0 + 10 * MIN) == [], "no escalation to level 2"
    assert m.mute_due(T0 + 11 * MIN) == [], "closed once"


def test_a_device_silent_within_the_group_wait_holds_back_the_missed_recheck() -> None:
    m = machine()
    missed = alert(
        "miss", T0, alert_type="FEVER_RECHECK_MISSED", severity="WARNING", subject_id="p1"
    )
    (routed,) = m.on_alert(missed, 0, T0)
    assert routed["action"] == "ROUTED", "the source is not there yet: taken on"
    assert m.due(T0 + 10_000) == [], "grouping waits 30 s"
    silent = alert("dev", T0 + 10_000, alert_type="DEVICE_SILENT", severity="WARNING")
    m.on_alert(silent, 0, T0 + 10_000)
    muted = m.mute_due(T0 + 30_000)
    assert [(r["alert_id"], r["detail"]["inhibited_by"]) for r in muted] == [("miss", "dev")]
    assert m.due(T0 + 30_000) == []
    assert {d.alert_id for d in m.due(T0 + 40_000)} == {"dev"}, "the source itself is paged"
    # a later missed recheck at that gate is held back at once
    (held,) = m.on_alert({**missed, "alert_id": "miss2"}, 0, T0 + MIN)
    assert held["action"] == "SILENCED" and held["detail"]["rule"] == (
        "device-silent-holds-recheck-missed"
    )
    # resolving the source ends it: the next one is paged again
    m.apply(request_record("RESOLVE_REQUESTED", "dev", "st-east-day", 0, T0 + 2 * MIN))
    (again,) = m.on_alert({**missed, "alert_id": "miss3"}, 0, T0 + 3 * MIN)
    assert again["action"] == "ROUTED"


def test_a_silenced_source_still_holds_back() -> None:
    m = machine(silence(alert_types=["DEVICE_SILENT"], gate_ids=[]))
    (silent,) = m.on_alert(alert("dev", T0, alert_type="DEVICE_SILENT", severity="WARNING"), 0, T0)
    assert silent["action"] == "SILENCED"
    missed = alert("miss", T0, alert_type="FEVER_RECHECK_MISSED", severity="WARNING")
    (held,) = m.on_alert(missed, 0, T0 + MIN)
    assert held["detail"]["muted_by"] == "inhibition"


def test_records_keep_the_subject_key_not_the_subject_and_a_restore_rebuilds_the_sources() -> None:
    live = machine()
    log: list[dict[str, Any]] = []
    breach = alert("breach", T0, alert_type="QUARANTINE_BREACH", subject_id="tok-person-1")
    log += live.on_alert(breach, 0, T0)
    assert "tok-person-1" not in repr(log)
    assert log[0]["detail"]["subject_key"] == live.inhibitor.subject_key("tok-person-1")
    restored = machine()  # a restart: the same rules and key, state from the log alone
    for record in log:
        restored.apply(record, live=False)
    yellow = alert(
        "yellow",
        T0 + MIN,
        alert_type="HEALTH_CODE_YELLOW",
        severity="WARNING",
        gate_id="north-gate",
        subject_id="tok-person-1",
    )
    (held,) = restored.on_alert(yellow, 0, T0 + MIN)
    assert (held["action"], held["detail"]["inhibited_by"]) == ("SILENCED", "breach")
    # and the muted alert itself is known after a restore: a redelivery writes nothing
    again = machine()
    for record in [*log, held]:
        again.apply(record, live=False)
    assert again.on_alert(yellow, 0, T0 + 2 * MIN) == []


def test_without_rules_or_silences_nothing_is_muted() -> None:
    m = machine(rules=())
    m.on_alert(alert("dev", T0, alert_type="DEVICE_SILENT", severity="WARNING"), 0, T0)
    missed = alert("miss", T0, alert_type="FEVER_RECHECK_MISSED", severity="WARNING")
    (routed,) = m.on_alert(missed, 0, T0 + MIN)
    assert routed["action"] == "ROUTED" and m.mute_due(T0 + HOUR) == []


def test_an_acknowledged_source_holds_back_until_someone_resolves_it() -> None:
    m = machine()
    m.on_alert(alert("dev", T0, alert_type="DEVICE_SILENT", severity="CRITICAL"), 0, T0)
    step_through(m, T0)
    m.apply(request_record("ACK_REQUESTED", "dev", "st-east-day", 0, T0 + MIN))
    m.prune(T0 + MIN)  # the acknowledged alert leaves memory; the device is still off
    missed = alert("miss", T0, alert_type="FEVER_RECHECK_MISSED", severity="WARNING")
    (held,) = m.on_alert(missed, 0, T0 + 2 * MIN)
    assert held["detail"]["inhibited_by"] == "dev"
    m.apply(request_record("RESOLVE_REQUESTED", "dev", "st-east-day", 0, T0 + 3 * MIN))
    (paged,) = m.on_alert({**missed, "alert_id": "miss2"}, 0, T0 + 4 * MIN)
    assert paged["action"] == "ROUTED"
