"""The on-duty dispatcher in ``fangxian run``: a local fake WeCom robot on loopback, one guard
per simulated community on a 24-hour shift, and the dispatcher delivering the demo's alerts to
the robot with an @-mention and an acknowledge link. The first message is acknowledged by
opening its link (as the guard would), to show the ACKNOWLEDGED coming back.

What the demo does not do: write ``alert.actions`` to ClickHouse (its chdb is the worker's;
``fangxian dispatch`` does that against a server), or escalate visibly (level 2 is 10 minutes
away)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

from fangxian.core.settings import Settings
from infra.fake_bots import FakeBotConfig, FakeBots, Received
from infra.ports import free_port
from schemas import Codec
from sinks.channels.bots import WeComBot
from streams.dispatch.contacts import ContactBox, Contacts
from streams.dispatch.stage import DispatcherStage

log = logging.getLogger(__name__)

DEMO_ROSTER_KEY = "fangxian-demo-roster-key-not-for-production"
DEMO_ACK_KEY = "fangxian-demo-ack-key-not-for-production"
LINK = re.compile(r"http://127\.0\.0\.1:\d+/ack\?\S+")
SHOWN_DELIVERIES = 12  # the console shows the first ones; the summary counts them all


def roster_records(
    community_ids: Iterable[str], box: ContactBox
) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for i, community in enumerate(community_ids):
        staff_id = f"demo-guard-{i}"
        out.append(
            (
                "StaffMember",
                {
                    "staff_id": staff_id,
                    "community_id": community,
                    "display_name": f"值班门岗 {i + 1} 号",
                    "role": "GATE_GUARD",
                    "contacts": box.seal(
                        Contacts(wecom_userid=f"guard{i + 1}"), staff_id, community
                    ),
                },
            )
        )
        out.append(
            (
                "DutyShift",
                {
                    "shift_id": f"demo-all-day-{i}",
                    "community_id": community,
                    "staff_id": staff_id,
                    "start_minute": 0,
                    "end_minute": 0,
                },
            )
        )
        out.append(
            (
                "EscalationPolicy",
                {
                    "community_id": community,
                    "steps": [
                        {"level": 1, "after_s": 0, "channels": ["wecom:demo"]},
                        {"level": 2, "after_s": 600, "channels": ["wecom:demo"]},
                    ],
                    "group_wait_s": 10,
                },
            )
        )
    return out


class DemoDispatch:
    def __init__(self, settings: Settings, community_ids: list[str]) -> None:
        port = free_port()
        self.settings = settings.replace(
            roster_key=settings.roster_key or DEMO_ROSTER_KEY,
            ack_link_key=settings.ack_link_key or DEMO_ACK_KEY,
            ack_port=port,
            ack_base_url=f"http://127.0.0.1:{port}",
        )
        self._communities = community_ids
        self.bots = FakeBots(FakeBotConfig(per_minute=100_000))
        self.stage: DispatcherStage | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.acknowledged_link = False

    async def start(self) -> None:
        await self.bots.start()
        self.bots.on_request = self._show
        box = ContactBox(self.settings.roster_key)
        codec = Codec()
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap)
        await producer.start()
        try:
            topics = self.settings.topics
            where = {
                "StaffMember": (topics.staff, "staff_id"),
                "DutyShift": (topics.duty, "shift_id"),
                "EscalationPolicy": (topics.escalation, "community_id"),
            }
            for name, record in roster_records(self._communities, box):
                topic, key = where[name]
                await producer.send_and_wait(
                    topic, codec.encode(name, record), key=record[key].encode()
                )
        finally:
            await producer.stop()
        robot = WeComBot("wecom:demo", self.bots.wecom_url())
        robot.rate_count = 100_000  # the local robot has no 20/min limit; a real one does
        self.stage = DispatcherStage(
            self.settings, {"wecom:demo": robot}, idempotent_producer=False
        )
        await self.stage.start()
        self._tasks.append(asyncio.create_task(self.stage.run()))
        print(
            f"值班派单 dispatcher: 本地企业微信机器人 local WeCom robot on {self.bots.base_url}, "
            f"确认链接 ack links on {self.settings.ack_base_url}",
            flush=True,
        )

    def _show(self, item: Received) -> None:
        text = str(item.payload.get("text", {}).get("content", ""))
        mentions = item.payload.get("text", {}).get("mentioned_list", [])
        headline = text.split("\n", 1)[0]
        shown = len(self.bots.received)
        if shown < SHOWN_DELIVERIES:
            print(f"📨 企业微信群 WeCom ← @{','.join(mentions) or '-'}: {headline}", flush=True)
        elif shown == SHOWN_DELIVERIES:
            print("📨 … 后续消息见汇总 further messages are counted in the summary", flush=True)
        links = LINK.findall(text)
        if links and not self.acknowledged_link:
            self.acknowledged_link = True
            self._tasks.append(asyncio.get_running_loop().create_task(self._acknowledge(links[0])))

    async def _acknowledge(self, link: str) -> None:
        await asyncio.sleep(1.0)  # the guard reads the message, then taps the link
        async with aiohttp.ClientSession() as session, session.get(link) as response:
            ok = response.status == 200
        print(
            f"✔ 门岗点击确认链接 guard opened the acknowledge link: HTTP {200 if ok else 'error'}",
            flush=True,
        )

    def summary(self) -> str:
        if self.stage is None:
            return "值班派单 dispatcher: not started"
        machine = self.stage.machine  # closed alerts leave ``alerts`` for ``closed``
        acked = sum(1 for a in machine.alerts.values() if a.status == "ACKNOWLEDGED")
        acked += machine.closed.count("ACKNOWLEDGED")
        return (
            f"值班派单 dispatcher: 消息 messages to the robot {len(self.bots.of_kind('wecom'))}, "
            f"发送失败 failed {self.stage.failed}, 已确认 acknowledged alerts {acked}"
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.stage is not None:
            with contextlib.suppress(Exception):
                await self.stage.stop()
        await self.bots.stop()
