"""End to end on the real broker with the real decide stage: each family's fake device gets the
core's decision in its native answer within its timeout; nothing raw reaches Kafka or the log."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from fangxian.core.settings import Settings
from infra.fake_devices import hikvision_event, hikvision_push, plate_alarm, qr_form
from tests.integration.edge_harness import (
    HIK_TIMEOUT_MS,
    PATH_SECRET,
    PLATE_TIMEOUT_MS,
    QR_TIMEOUT_MS,
    REG_PLATE,
    RESIDENT,
    UNREG_PLATE,
    EdgeEnv,
    decoded,
    edge_env,
    iso_now,
    read_topic,
    wait_for,
)

RAW_ID = "11010519491231002X"  # RESIDENT's ID number (the register's token is made from it)
RAW_CARD = "3387654321"


async def _warm_up(env: EdgeEnv) -> None:
    """The decide stage's first transaction takes a while: wait until it answers in time."""
    deadline = time.monotonic() + 45
    n = 0
    while time.monotonic() < deadline:
        n += 1
        body = json.dumps(
            {
                "device_id": "api-1",
                "event_serial": f"warm-{n}",
                "method": "QR",
                "identifier": f"FX1R:{RESIDENT}:G",
                "identifier_kind": "qr",
            }
        ).encode()
        answer = await env.client.post(
            "/edge/api/v1/scans", body, "application/json", auth=("api", "api-pass")
        )
        if json.loads(answer.body)["results"][0]["source"] == "core":
            return
        await asyncio.sleep(0.5)
    raise AssertionError("the decide stage never answered inside the timeout")


def test_each_family_gets_the_cores_decision_in_its_native_answer(
    topics: Settings, tmp_path: Path
) -> None:
    async def main() -> None:
        async with edge_env(topics, tmp_path, decide=True) as env:
            await _warm_up(env)
            before = env.fallbacks()

            # a fever at a Hikvision terminal with remote verification: refused in time
            push, ctype = hikvision_push(
                hikvision_event(
                    serial_no=9001,
                    employee_no=RESIDENT,
                    temperature_c=38.6,
                    remote_check=True,
                    date_time=iso_now(),
                )
            )
            sent = time.perf_counter()
            ack = await env.client.post(
                "/edge/hikvision/event", push, ctype, digest=("edge", "edge-pass")
            )
            assert ack.status == 200
            seen = await asyncio.wait_for(env.terminal.expect(9001), HIK_TIMEOUT_MS / 1000)
            assert seen.check_result == "failed"
            assert seen.at - sent < HIK_TIMEOUT_MS / 1000

            # a plate camera: the barrier opens for the registered plate only
            secs = int(time.time())
            answers = {}
            for plate, pid in ((REG_PLATE, 1), (UNREG_PLATE, 2)):
                answer = await env.client.post(
                    f"/d/{PATH_SECRET}/edge/plate/alarm",
                    plate_alarm(serialno="CAM0001", licence=plate, plate_id=pid, sec=secs),
                    "application/json",
                )
                assert answer.seconds < PLATE_TIMEOUT_MS / 1000
                answers[plate] = json.loads(answer.body)["Response_AlarmInfoPlate"]["info"]
            assert answers == {REG_PLATE: "ok", UNREG_PLATE: "no"}

            # a QR reader: a red code is refused, a green one opens
            red = await env.client.post(
                "/edge/qr/scan", qr_form(f"FX1R:{RESIDENT}:R", "R-01"), None
            )
            green = await env.client.post(
                "/edge/qr/scan", qr_form(f"FX1R:{RESIDENT}:G", "R-01"), None
            )
            assert (red.body, green.body) == (b"code=0001", b"code=0000")
            assert red.seconds < QR_TIMEOUT_MS / 1000

            # every answer above was the core's: the control for the fault test
            assert env.fallbacks() == before

            # the fever alert was raised by the core for that scan
            bootstrap = env.settings.kafka_bootstrap
            alerts = await wait_for(
                lambda: [
                    a
                    for a in decoded(bootstrap, env.settings.topics.alerts, "Alert")
                    if a["alert_type"] == "FEVER_RECHECK" and a["device_id"] == "hik-1"
                ],
                20,
                "FEVER_RECHECK alert",
            )
            assert alerts[0]["subject_id"] == RESIDENT

    asyncio.run(main())


def test_no_raw_identifier_reaches_kafka_the_log_or_dead_letters(
    topics: Settings, tmp_path: Path
) -> None:
    async def main() -> None:
        async with edge_env(topics, tmp_path, decide=True) as env:
            digest = ("edge", "edge-pass")
            for serial, fields in ((7001, {"employee_no": RAW_ID}), (7002, {"card_no": RAW_CARD})):
                push, ctype = hikvision_push(
                    hikvision_event(serial_no=serial, date_time=iso_now(), **fields)
                )
                assert (
                    await env.client.post("/edge/hikvision/e", push, ctype, digest=digest)
                ).status == 200
            plate = await env.client.post(
                f"/d/{PATH_SECRET}/edge/plate/a",
                plate_alarm(
                    serialno="CAM0001", licence=REG_PLATE, plate_id=3, sec=int(time.time())
                ),
                None,
            )
            assert plate.status == 200
            # malformed payloads carrying the raw values: refused, dead-lettered (redacted)
            bad = f'{{"AlarmInfoPlate": {{"license": "{REG_PLATE}", "id": "{RAW_ID}"]'.encode()
            assert (
                await env.client.post(f"/d/{PATH_SECRET}/edge/plate/a", bad, None)
            ).status == 400
            assert (
                await env.client.post("/edge/qr/scan", qr_form(RAW_ID, "R-01"), None)
            ).status == 200
            settings = env.settings
            bootstrap = settings.kafka_bootstrap
            scans = await wait_for(
                lambda: (
                    decoded(bootstrap, settings.topics.gate_scans, "GateScan")
                    if len(decoded(bootstrap, settings.topics.gate_scans, "GateScan")) >= 4
                    else None
                ),
                20,
                "four scans in Kafka",
            )
            assert {s["subject_id"] for s in scans} >= {RESIDENT}  # the ID became its token
            await wait_for(
                lambda: decoded(bootstrap, settings.topics.dead_letters, "DeadLetter"),
                20,
                "the dead letter",
            )
            await wait_for(
                lambda: (
                    len(decoded(bootstrap, settings.topics.gate_decisions, "GateDecision")) >= 4
                ),
                30,
                "decisions",
            )
            names = [
                getattr(settings.topics, f)
                for f in (
                    "gate_scans",
                    "temperature_readings",
                    "gate_decisions",
                    "alerts",
                    "dead_letters",
                )
            ]
            names += [settings.decide_events_topic, settings.decide_changelog_topic]
            everything = b""
            for name in names:
                for msg in read_topic(bootstrap, name):
                    everything += (msg.key or b"") + (msg.value or b"")
                    everything += b"".join(k.encode() + v for k, v in (msg.headers or []))
            assert len(everything) > 1000  # the search covers real traffic
            logs = "\n".join(env.log.lines).encode()
            for raw in (RAW_ID, RAW_CARD, REG_PLATE, REG_PLATE[1:]):
                for form in (raw.encode(), raw.encode("gb18030")):
                    assert form not in everything, raw
                    assert form not in logs, raw

    asyncio.run(main())
