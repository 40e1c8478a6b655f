"""The MQTT adapter as a table of cases: the topic layout, a pass and its decision, an offline
backlog and its acknowledgement, and refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fangxian.edge.adapter import (
    DeviceAdapter,
    DeviceRequest,
    IdentifierKind,
    MalformedRequest,
    RefusalReason,
    Verdict,
)
from fangxian.edge.adapters.mqtt import (
    MqttAdapter,
    decision_topic,
    pass_subscription,
    pass_topic,
    reply_topic,
)

ADAPTER = MqttAdapter()
COMMUNITY = "53110105MEA0000013"
DEVICE = "GW-EAST-01"
TOPIC = pass_topic(COMMUNITY, DEVICE)
CARD = "C0FFEE5678"


def publish(payload: Any, topic: str = TOPIC) -> DeviceRequest:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return DeviceRequest("PUBLISH", topic, {}, {}, body)


def test_topic_layout() -> None:
    assert pass_topic(COMMUNITY, DEVICE) == f"fangxian/{COMMUNITY}/{DEVICE}/pass"
    assert reply_topic(TOPIC) == f"fangxian/{COMMUNITY}/{DEVICE}/decision"
    assert reply_topic(TOPIC) == decision_topic(COMMUNITY, DEVICE)
    assert pass_subscription() == "fangxian/+/+/pass"
    assert reply_topic(f"fangxian/{COMMUNITY}/{DEVICE}/decision") is None
    assert reply_topic(f"fangxian/{COMMUNITY}/+/pass") is None
    assert TOPIC.startswith(ADAPTER.path_prefixes)


@pytest.mark.parametrize(
    ("payload", "expected", "delivery", "timeout_ms"),
    [
        pytest.param(
            {
                "seq": 1024,
                "ts": 1796550000123,
                "method": "CARD",
                "id": CARD,
                "temperature_c": 36.6,
                "direction": "IN",
                "door": 1,
                "wait_ms": 1500,
            },
            [("1024", "CARD", CARD, IdentifierKind.CARD_NO, 36.6, "IN", 1796550000123, False)],
            "response",
            1500,
            id="live card pass waits for its decision",
        ),
        pytest.param(
            {"seq": "f-77", "ts": "2026-12-07T08:00:00+08:00", "method": "QR", "id": "FX1V:12"},
            [("f-77", "QR", "FX1V:12", IdentifierKind.QR, None, None, 1796601600000, False)],
            "response",
            None,
            id="QR pass, ISO time with offset, id kind by method",
        ),
        pytest.param(
            {"seq": 9, "method": "FACE", "temperature_c": 38.1},
            [("9", "FACE", None, None, 38.1, None, None, False)],
            "response",
            None,
            id="stranger's face with a fever: no identifier",
        ),
        pytest.param(
            {"seq": 10, "method": "FACE", "id": "R1", "id_kind": "employee_no", "offline": True},
            [("10", "FACE", "R1", IdentifierKind.EMPLOYEE_NO, None, None, None, True)],
            "none",
            None,
            id="offline pass is acknowledged, not decided",
        ),
        pytest.param(
            {
                "events": [
                    {"seq": 1020, "ts": 1796550000000, "method": "CARD", "id": CARD},
                    {"seq": 1021, "ts": 1796550001000, "method": "MANUAL"},
                ]
            },
            [
                ("1020", "CARD", CARD, IdentifierKind.CARD_NO, None, None, 1796550000000, True),
                ("1021", "MANUAL", None, None, None, None, 1796550001000, True),
            ],
            "none",
            None,
            id="backlog after an outage",
        ),
    ],
)
def test_parse(
    payload: dict[str, Any],
    expected: list[tuple[Any, ...]],
    delivery: str,
    timeout_ms: int | None,
) -> None:
    parsed = ADAPTER.parse(publish(payload))
    assert parsed.identity.keys() == (DEVICE,)
    assert parsed.context["community"] == COMMUNITY
    assert (parsed.delivery, parsed.timeout_ms) == (delivery, timeout_ms)
    got = [
        (
            e.event_serial,
            e.method,
            e.identifier,
            e.identifier_kind,
            e.temperature_c,
            e.direction,
            e.event_time_ms,
            e.offline,
        )
        for e in parsed.events
    ]
    assert got == expected


@pytest.mark.parametrize(
    ("decision", "opens"),
    [
        pytest.param("ALLOW", True, id="allow opens"),
        pytest.param("WARN", True, id="warn opens"),
        pytest.param("RECHECK", False, id="recheck stays shut"),
        pytest.param("DENY", False, id="deny stays shut"),
    ],
)
def test_decision_answer(decision: Any, opens: bool) -> None:
    parsed = ADAPTER.parse(publish({"seq": 7, "method": "CARD", "id": CARD}))
    verdict = Verdict("7", decision, reasons=("FEVER_RECHECK",), message_zh="请复测")
    response = ADAPTER.answer(parsed, [verdict])
    assert response.status == 200
    body = json.loads(response.body)
    assert body == {
        "seq": "7",
        "decision": decision,
        "open": opens,
        "source": "core",
        "reasons": ["FEVER_RECHECK"],
        "message_zh": "请复测",
        "message_en": "",
    }
    assert CARD not in response.body.decode()


def test_backlog_answer_acknowledges_every_seq() -> None:
    parsed = ADAPTER.parse(
        publish({"events": [{"seq": 1, "method": "CARD"}, {"seq": 2, "method": "CARD"}]})
    )
    assert json.loads(ADAPTER.answer(parsed, ()).body) == {"ack": ["1", "2"]}


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        pytest.param(
            publish({"seq": 1, "method": "CARD"}, "fangxian/x/y"), "bad_topic", id="short"
        ),
        pytest.param(
            publish({"seq": 1, "method": "CARD"}, f"other/{COMMUNITY}/{DEVICE}/status"),
            "bad_topic",
            id="not a pass topic",
        ),
        pytest.param(publish(b""), "empty_body", id="empty payload"),
        pytest.param(publish(b"\xff\xfe{"), "bad_encoding", id="not UTF-8"),
        pytest.param(publish(b"{" * 100_000), "bad_json", id="nested past recursion"),
        pytest.param(publish({"method": "CARD", "id": CARD}), "missing_field", id="no seq"),
        pytest.param(publish({"seq": 1, "method": "PALM", "id": CARD}), "bad_field", id="method"),
        pytest.param(
            publish({"seq": 1, "method": "CARD", "id": CARD, "id_kind": "x"}),
            "bad_field",
            id="id kind",
        ),
        pytest.param(
            publish({"seq": 1, "method": "CARD", "id": CARD, "ts": "2026-12-07T08:00:00"}),
            "bad_field",
            id="time without offset",
        ),
        pytest.param(
            publish({"seq": 1, "method": "CARD", "id": CARD, "temperature_c": "36.5"}),
            "bad_field",
            id="temperature as a string",
        ),
        pytest.param(
            publish({"seq": 1, "method": "CARD", "id": CARD, "wait_ms": 600_000}),
            "bad_field",
            id="wait too long",
        ),
        pytest.param(publish({"events": {"seq": 1}}), "bad_field", id="events not a list"),
        pytest.param(publish([1, 2]), "bad_json", id="not an object"),
    ],
)
def test_refuses_what_cannot_be_parsed(req: DeviceRequest, reason: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        ADAPTER.parse(req)
    assert caught.value.reason == reason
    assert CARD not in str(caught.value)


def test_refusals_are_json_errors() -> None:
    for reason in RefusalReason:
        response = ADAPTER.refuse(reason)
        assert response.status != 200
        assert json.loads(response.body) == {"error": reason.value}


def test_satisfies_the_adapter_protocol() -> None:
    assert isinstance(ADAPTER, DeviceAdapter)
    assert ADAPTER.vendor == "mqtt"
