"""Alert → on-duty guard → acknowledgement → alert.actions → ClickHouse → daily report, with
real Kafka, the real ClickHouse 18.16 server, the CLI loaders and the loopback fake robots."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from fangxian.core.settings import Settings
from infra.fake_bots import FakeBots
from sinks import migrate, open_writer
from sinks.channels.delivery import RetryPolicy
from sinks.reports.daily import Scope, build_report
from streams.dispatch.action_sink import ActionSink
from streams.dispatch.stage import DispatcherStage
from tests.integration.dispatch_harness import (
    COMMUNITY,
    EXAMPLES,
    AlertProducer,
    dispatch_settings,
    fever_alert,
    load_example_roster,
    read_actions,
)

ZONE = ZoneInfo("Asia/Shanghai")
LINK = re.compile(r"http://127\.0\.0\.1:\d+/ack\?\S+")
ESCALATE_AFTER_S = 8


def on_duty_level_1(now: dt.datetime) -> list[tuple[str, str]]:
    """(staff_id, WeCom userid) the example duty roster has at level 1 for the east gate now:
    the day or night guard, and the grid worker on weekdays 08:30-17:30."""
    local = now.astimezone(ZONE)
    guard = ("st-east-day", "lishifu") if 8 <= local.hour < 20 else ("st-east-night", "wangshifu")
    minute = local.hour * 60 + local.minute
    grid = local.isoweekday() <= 5 and 8 * 60 + 30 <= minute < 17 * 60 + 30
    return sorted([guard, *([("st-grid-01", "chenjie")] if grid else [])])


def short_policy(tmp_path: Path) -> Path:
    (policy,) = json.loads((EXAMPLES / "escalation-example.json").read_text(encoding="utf-8"))
    policy["steps"][1]["after_s"] = ESCALATE_AFTER_S
    policy["steps"][2]["after_s"] = 3600
    path = tmp_path / "escalation.json"
    path.write_text(json.dumps([policy]), encoding="utf-8")
    return path


async def scrape(settings: Settings) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The dispatcher's /metrics over HTTP: sample value by (name, sorted labels)."""
    url = f"http://127.0.0.1:{settings.dispatch_metrics_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        text = await response.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def until(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_fever_reaches_the_guard_is_acknowledged_stops_escalating_and_is_reported(
    topics: Settings, clickhouse_url: str, tmp_path: Path
) -> None:
    async def main() -> dict[str, Any]:
        bots = await FakeBots().start()
        settings = dispatch_settings(topics, tmp_path, bots, clickhouse_url=clickhouse_url)
        loaded = await asyncio.to_thread(load_example_roster, settings, short_policy(tmp_path))
        writer = open_writer(clickhouse_url)
        migrate(writer, retention_days=settings.retention_days)
        stage = DispatcherStage(settings)
        sink = ActionSink(settings, writer, flush_s=0.2)
        await stage.start()
        await sink.start()
        tasks = [asyncio.create_task(stage.run()), asyncio.create_task(sink.run())]
        producer = AlertProducer(settings)
        try:
            await asyncio.wait_for(stage.ready.wait(), 60)
            now = dt.datetime.now(dt.UTC)
            acked = fever_alert(int(now.timestamp() * 1000))
            ignored = fever_alert(int(now.timestamp() * 1000) + 1, message_zh="第二例 second")
            sent_at = time.time()
            await asyncio.to_thread(producer.send, acked)
            first = await until(lambda: bots.of_kind("wecom"), 15, "the WeCom message")
            latency_s = first[0].at - sent_at
            await asyncio.to_thread(producer.send, ignored)
            await until(lambda: len(bots.of_kind("wecom")) >= 2, 15, "the second message")
            payload = first[0].payload
            link = LINK.findall(payload["text"]["content"])[0]  # the first recipient's
            async with aiohttp.ClientSession() as session, session.get(link) as response:
                page_status, page = response.status, await response.text()
            state = stage.machine.alerts[acked["alert_id"]]
            await until(lambda: state.status == "ACKNOWLEDGED", 10, "the acknowledgement")
            # the unacknowledged one escalates to level 2 (DingTalk + SMS); the other does not
            await until(lambda: bots.of_kind("dingtalk"), ESCALATE_AFTER_S + 15, "escalation")
            await until(lambda: bots.of_kind("sms"), 10, "the level-2 SMS")
            await asyncio.sleep(1.0)

            def acked_in_clickhouse() -> list[Any]:
                return writer.query(
                    f"SELECT alert_id, staff_ids FROM {writer.database}.alert_actions FINAL"
                    " WHERE action = 'ACKNOWLEDGED'"
                )

            in_clickhouse = await until(acked_in_clickhouse, 15, "ClickHouse row")
            report = build_report(
                writer, Scope("community", COMMUNITY), now.astimezone(ZONE).date(), "Asia/Shanghai"
            )
            return {
                "loaded": loaded,
                "latency_s": latency_s,
                "payload": payload,
                "page": (page_status, page),
                "dingtalk": [r.payload for r in bots.of_kind("dingtalk")],
                "sms": [r.payload for r in bots.of_kind("sms")],
                "clickhouse": in_clickhouse,
                "report": report,
                "acked": acked,
                "ignored": ignored,
                "level_1": on_duty_level_1(now),
                "rejected": list(bots.rejected),
            }
        finally:
            producer.close()
            await stage.stop()
            await sink.stop()
            for task in tasks:
                task.cancel()
            writer.close()
            await bots.stop()

    out = asyncio.run(main())
    assert "line 7" in out["loaded"]["staff"] and "line 7" in out["loaded"]["duty"], out["loaded"]
    assert "1380000" not in out["loaded"]["staff"], "the bad phone is masked in the error"
    assert out["latency_s"] < 5.0, f"alert to WeCom took {out['latency_s']:.2f} s"
    text = out["payload"]["text"]
    level_1 = out["level_1"]
    assert text["mentioned_list"] == [u for _, u in level_1], "the on-duty guard is @-mentioned"
    assert len(LINK.findall(text["content"])) == len(level_1), "one link per person"
    assert text["content"].startswith("【紧急 CRITICAL】FEVER_CONFIRMED · east-gate")
    assert "东门复测体温" in text["content"] and "fever confirmed" in text["content"]
    assert out["page"][0] == 200 and "已确认收到" in out["page"][1]
    # level 2 only for the alert nobody acknowledged
    assert len(out["dingtalk"]) == 1
    ding = out["dingtalk"][0]["text"]["content"]
    assert "第二例" in ding and "升级至第 2 级" in ding
    assert out["dingtalk"][0]["at"]["atMobiles"] == ["13800000014"]
    assert [p["PhoneNumbers"] for p in out["sms"]] == ["13800000014"]
    assert out["clickhouse"] == [(out["acked"]["alert_id"], [level_1[0][0]])]
    (figures,) = out["report"].on_duty
    assert (figures.community_id, figures.alerts_routed, figures.acknowledged) == (COMMUNITY, 2, 1)
    assert figures.unacknowledged == 1 and 0 <= figures.ack_max_s < 30
    assert out["rejected"] == [], "every request passed the servers' signature checks"


def test_actions_topic_holds_the_whole_lifecycle_of_the_acknowledged_alert(
    topics: Settings, tmp_path: Path
) -> None:
    """Without ClickHouse: the alert.actions log alone tells what happened, in order; the
    dispatcher's /metrics counts the delivery, the acknowledgement and then (after the
    control scrape shows none) a delivery the robot answers with a 5xx."""
    delivered = (
        "fangxian_dispatch_messages_total",
        (("channel", "wecom"), ("outcome", "delivered")),
    )
    failed = ("fangxian_dispatch_messages_total", (("channel", "wecom"), ("outcome", "failed")))
    acks = ("fangxian_dispatch_acknowledgements_total", (("via", "link"),))
    first = ("fangxian_dispatch_first_message_seconds_count", ())
    open_critical = ("fangxian_dispatch_open_alerts", (("severity", "CRITICAL"),))
    scraped: dict[str, dict[Any, float]] = {}

    async def main() -> tuple[dict[str, Any], Settings]:
        bots = await FakeBots().start()
        settings = dispatch_settings(topics, tmp_path, bots)
        await asyncio.to_thread(load_example_roster, settings)
        # one try per delivery: the injected 5xx is a failure at once (retried 30 s later)
        stage = DispatcherStage(settings, retry=RetryPolicy(max_tries=1), serve_metrics=True)
        await stage.start()
        task = asyncio.create_task(stage.run())
        producer = AlertProducer(settings)
        try:
            await asyncio.wait_for(stage.ready.wait(), 60)
            alert = fever_alert(int(time.time() * 1000))
            await asyncio.to_thread(producer.send, alert)
            (received,) = await until(lambda: bots.of_kind("wecom"), 15, "the message")
            link = LINK.findall(received.payload["text"]["content"])[0]
            forged = link.replace("&s=", "&s=x")
            async with aiohttp.ClientSession() as session:
                async with session.get(forged) as response:
                    assert response.status == 403
                async with session.get(link) as response:
                    assert response.status == 200
            state = stage.machine.alerts[alert["alert_id"]]
            await until(lambda: state.status == "ACKNOWLEDGED", 10, "the acknowledgement")
            await asyncio.sleep(1.5)  # the open-alert gauges are set once a second
            scraped["acknowledged"] = await scrape(settings)
            bots.inject("wecom", "5xx")
            await asyncio.to_thread(producer.send, fever_alert(int(time.time() * 1000)))
            await until(lambda: stage.failed >= 1, 15, "the failed delivery")
            await asyncio.sleep(1.5)
            scraped["failed"] = await scrape(settings)
            return alert, settings
        finally:
            producer.close()
            await stage.stop()
            task.cancel()
            await bots.stop()

    alert, settings = asyncio.run(main())
    mine = [a for a in read_actions(settings) if a["alert_id"] == alert["alert_id"]]
    assert [a["action"] for a in mine] == [
        "ROUTED",
        "SENDING",
        "NOTIFIED",
        "ACK_REQUESTED",
        "ACKNOWLEDGED",
    ]
    notified = mine[2]
    assert (notified["channel"], notified["attempt"], notified["level"]) == (
        "wecom:east-gate",
        1,
        1,
    )
    assert mine[4]["staff_ids"] == mine[3]["staff_ids"] and mine[4]["community_id"] == COMMUNITY
    before, after = scraped["acknowledged"], scraped["failed"]
    assert before[delivered] >= 1 and before[acks] == 1 and before[first] == 1
    assert before.get(failed, 0) == 0, "control: no failure counted before the 5xx"
    assert before[open_critical] == 0, "the only alert is acknowledged"
    assert after[failed] == 1 and after[delivered] == before[delivered]
    by_target = [
        v
        for (name, labels), v in after.items()
        if name == "fangxian_dispatch_failures_total" and ("channel", "wecom:east-gate") in labels
    ]
    assert sum(by_target) == 1, "the failure is counted for its target, with its reason"
    assert after[open_critical] == 1, "the second alert is open, its message not delivered"
