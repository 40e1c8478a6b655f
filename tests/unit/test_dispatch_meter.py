"""The dispatcher's metrics: what each alert.actions record counts, the open-alert gauges, the
alert → first-message latency of a group, and the counts applied to a real registry."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fangxian.core.metrics import Metrics
from streams.dispatch.machine import DispatchMachine, request_record
from streams.dispatch.meter import (
    Count,
    DispatchMeter,
    first_message_latencies,
    open_alerts,
    record_counts,
)
from tests.unit.test_dispatch_machine import alert, local_ms, roster

KINDS = {"wecom:east": "wecom", "dingtalk:office": "dingtalk", "sms": "sms"}


def kind_of(target: str) -> str:
    return KINDS.get(target_of(target), "unrouted")


def target_of(target: str) -> str:
    return "sms" if target.startswith("sms:") else target


def action(kind: str, **fields: Any) -> dict[str, Any]:
    return {"action": kind, "channel": None, "level": 0, "detail": {"partition": "0"}, **fields}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        pytest.param(
            action("NOTIFIED", channel="wecom:east"),
            [Count("dispatch_messages", (("channel", "wecom"), ("outcome", "delivered")))],
            id="a WeCom message delivered",
        ),
        pytest.param(
            action("NOTIFIED", channel="sms:st-east-night"),
            [Count("dispatch_messages", (("channel", "sms"), ("outcome", "delivered")))],
            id="an SMS to one person counts on the sms kind, not per staff member",
        ),
        pytest.param(
            action(
                "DELIVERY_FAILED",
                channel="dingtalk:office",
                detail={"partition": "0", "code": "130101", "retry_at": "1"},
            ),
            [
                Count("dispatch_messages", (("channel", "dingtalk"), ("outcome", "failed"))),
                Count("dispatch_failures", (("channel", "dingtalk:office"), ("reason", "130101"))),
            ],
            id="a failure with a retry to come is a failed message, by target and errcode",
        ),
        pytest.param(
            action("DELIVERY_FAILED", channel="unrouted", detail={"partition": "0"}),
            [
                Count("dispatch_messages", (("channel", "unrouted"), ("outcome", "failed"))),
                Count("dispatch_failures", (("channel", "unrouted"), ("reason", "error"))),
            ],
            id="a step without a channel fails visibly as unrouted",
        ),
        pytest.param(
            action("ESCALATED", level=2),
            [Count("dispatch_escalations", (("level", "2"),))],
            id="an escalation by the level escalated to",
        ),
        pytest.param(
            action("ACKNOWLEDGED", detail={"partition": "0", "via": "link"}),
            [Count("dispatch_acknowledgements", (("via", "link"),))],
            id="acknowledged through the link",
        ),
        pytest.param(
            action("ACKNOWLEDGED", detail={"partition": "0", "via": "console"}),
            [Count("dispatch_acknowledgements", (("via", "console"),))],
            id="acknowledged in the console",
        ),
        pytest.param(
            action("ACKNOWLEDGED", detail={"partition": "0", "via_leader": "w0"}),
            [],
            id="a group member closed with its leader is not a second acknowledgement",
        ),
        pytest.param(
            action("SILENCED", detail={"muted_by": "silence", "silence_id": "s1"}),
            [Count("dispatch_muted", (("by", "silence"),))],
            id="muted by a silence",
        ),
        pytest.param(
            action("SILENCED", detail={"muted_by": "inhibition", "inhibited_by": "a1"}),
            [Count("dispatch_muted", (("by", "inhibition"),))],
            id="muted by inhibition",
        ),
        pytest.param(action("SENDING", channel="wecom:east"), [], id="SENDING is no outcome"),
        pytest.param(action("ROUTED"), [], id="ROUTED counts nothing"),
        pytest.param(action("RESOLVED", detail={"via": "console"}), [], id="RESOLVED is no ack"),
    ],
)
def test_what_a_record_counts(record: dict[str, Any], expected: list[Count]) -> None:
    assert record_counts(record, kind_of, target_of) == expected


T0 = local_ms(15, 21)


@pytest.mark.parametrize(
    ("alerts", "closed", "now", "expected"),
    [
        pytest.param([], [], T0, {"CRITICAL": (0, 0.0)}, id="nothing held"),
        pytest.param(
            [("c1", "CRITICAL", T0 - 90_000), ("c2", "CRITICAL", T0 - 30_000)],
            [],
            T0,
            {"CRITICAL": (2, 90.0), "WARNING": (0, 0.0)},
            id="two open CRITICAL: the older is 90 s old",
        ),
        pytest.param(
            [("c1", "CRITICAL", T0 - 90_000), ("c2", "CRITICAL", T0 - 30_000)],
            ["c1"],
            T0,
            {"CRITICAL": (1, 30.0)},
            id="the acknowledged one is no longer open",
        ),
        pytest.param(
            [("w1", "WARNING", T0 - 5_000)],
            [],
            T0,
            {"CRITICAL": (0, 0.0), "WARNING": (1, 5.0), "INFO": (0, 0.0)},
            id="per severity",
        ),
    ],
)
def test_open_alerts_per_severity(
    alerts: list[tuple[str, str, int]],
    closed: list[str],
    now: int,
    expected: dict[str, tuple[int, float]],
) -> None:
    m = DispatchMachine(roster())
    for alert_id, severity, created in alerts:
        m.on_alert(
            alert(alert_id, created, severity=severity, gate_id=alert_id, created_at=created),
            0,
            created,
        )
    for alert_id in closed:
        m.close("ACKNOWLEDGED", alert_id, "night", now)
    held = open_alerts(m.alerts.values(), now)
    assert set(held) == {"INFO", "WARNING", "CRITICAL"}, "every severity of the contract"
    assert {k: held[k] for k in expected} == expected


def test_first_message_latency_is_observed_once_for_each_alert_of_the_group() -> None:
    m = DispatchMachine(roster())
    for i, offset in enumerate((0, 5_000, 20_000)):
        at = T0 + offset
        drift = alert(f"w{i}", at, severity="WARNING", alert_type="DEVICE_DRIFT", created_at=at)
        m.on_alert(drift, 0, at)
    (delivery,) = m.due(T0 + 30_000)
    m.begin(delivery, T0 + 30_000)
    leader = m.alerts["w0"]
    assert first_message_latencies(leader, m.alerts, T0 + 31_000) == [31.0, 26.0, 11.0]
    m.finish(delivery, True, T0 + 31_000, {})
    assert first_message_latencies(leader, m.alerts, T0 + 40_000) == [], "not the first any more"


def test_control_a_failed_first_message_does_not_end_the_wait_for_the_first() -> None:
    m = DispatchMachine(roster())
    m.on_alert(alert("c1", T0, created_at=T0 - 2_000), 0, T0)
    (delivery,) = m.due(T0)
    m.begin(delivery, T0)
    m.finish(delivery, False, T0, {}, retry_after_ms=1_000)
    assert first_message_latencies(m.alerts["c1"], m.alerts, T0 + 3_000) == [5.0]


def test_the_meter_moves_the_registry() -> None:
    registry = CollectorRegistry()
    meter = DispatchMeter(Metrics.create(registry), kind_of, target_of)
    m = DispatchMachine(roster())
    m.on_alert(alert("c1", T0, created_at=T0), 0, T0)
    for record in (
        action("NOTIFIED", channel="wecom:east"),
        action("NOTIFIED", channel="wecom:east"),
        action("DELIVERY_FAILED", channel="sms:lead", detail={"code": "isv.BUSINESS_LIMIT"}),
        action("ESCALATED", level=2),
        *m.apply(request_record("ACK_REQUESTED", "c1", "night", 0, T0 + 60_000)),
    ):
        meter.count(record)
    meter.first_message([1.5])
    meter.hold(m.alerts.values(), T0 + 60_000, {"wecom:east": True, "sms": False})

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("fangxian_dispatch_messages_total", channel="wecom", outcome="delivered") == 2
    assert value("fangxian_dispatch_messages_total", channel="sms", outcome="failed") == 1
    assert value("fangxian_dispatch_failures_total", channel="sms", reason="isv.BUSINESS_LIMIT")
    assert value("fangxian_dispatch_escalations_total", level="2") == 1
    assert value("fangxian_dispatch_acknowledgements_total", via="link") == 1
    assert value("fangxian_dispatch_first_message_seconds_count") == 1
    assert value("fangxian_dispatch_first_message_seconds_bucket", le="2.5") == 1
    assert value("fangxian_dispatch_open_alerts", severity="CRITICAL") == 0
    assert value("fangxian_dispatch_breaker_open", target="wecom:east") == 1
    assert value("fangxian_dispatch_breaker_open", target="sms") == 0
