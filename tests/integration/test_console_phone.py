"""The console on a guard's phone (390×844, touch, a WeCom in-app browser's user agent) in
Debian's Chromium driven by Playwright, against the real stack of the browser test (Apache
Kafka, the decide path, the dispatcher with the fake WeCom robot, the console, chdb):

- the acknowledge link in the WeCom message opens the dispatcher's page, whose button leads to
  the alert in the console; not signed in, the console asks for sign-in (``next=``) and then
  shows that alert, marked, first;
- no page scrolls sideways (``scrollWidth <= clientWidth``: the acknowledge page, sign-in, the
  alert's page, live alerts, gate decisions); control: without the phone rules the alerts
  table is wider than the screen;
- the live feed works: an alert produced after the page loaded appears; its acknowledge button
  and another alert's resolve button are inside the screen, at least 44 px, and tapping them
  acknowledges and resolves;
- sign-in never sends the browser to another site (``next=https://…`` lands on the alerts page).

Screenshots go to ``tmp_path``; with ``FANGXIAN_SCREENSHOTS=DIR`` also to DIR (``docs/console``
keeps ``phone-*.png``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from playwright import async_api as playwright_api

from fangxian.console.auth import Credentials
from fangxian.console.server import start_console
from fangxian.core.settings import Settings
from infra.fake_bots import FakeBots
from infra.ports import free_port
from sinks import migrate, open_writer
from streams.dispatch.action_sink import ActionSink
from streams.dispatch.stage import DispatcherStage
from tests.integration.dispatch_harness import dispatch_settings, load_example_roster
from tests.integration.pipeline_harness import fresh_example
from tests.integration.test_console_browser import (
    CHROMIUM,
    GUARD,
    PASSWORD,
    decide_path,
    produce_background,
    produce_reading,
)

PHONE = {"width": 390, "height": 844}
#: a WeCom in-app browser on Android (the user agent WeCom's webview sends)
WECOM_UA = (
    "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230805.001; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 wxwork/4.1.22 "
    "MicroMessenger/7.0.1 NetType/WIFI Language/zh"
)
LINK = re.compile(r"http://127\.0\.0\.1:\d+/ack\?\S+")
OVERFLOW = "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
WITHOUT_PHONE_RULES = """
() => {
  for (const sheet of document.styleSheets) {
    for (let i = sheet.cssRules.length - 1; i >= 0; i--) {
      if (sheet.cssRules[i].media) sheet.deleteRule(i);
    }
  }
}
"""
NEW_RECHECK = """
(known) => {
  const rows = [...document.querySelectorAll('#alerts tbody tr[data-alert-id]')];
  const row = rows.find((r) => !known.includes(r.dataset.alertId)
    && (r.querySelector('td:nth-child(3) .en') || {}).textContent === 'FEVER_RECHECK');
  return row ? row.dataset.alertId : null;
}
"""
T = TypeVar("T")


async def until(check: Callable[[], T], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout_s} s")


async def box_of(page: Any, selector: str) -> dict[str, float]:
    target = page.locator(selector)
    # as a thumb would: scrolled to the middle of the screen (at an edge a box can sit a
    # fraction of a pixel outside)
    await target.evaluate("(e) => e.scrollIntoView({block: 'center'})")
    box = await target.bounding_box()
    assert box is not None, selector
    return dict(box)


def inside_the_screen(box: dict[str, float]) -> bool:
    return (
        box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= PHONE["width"]
        and box["y"] + box["height"] <= PHONE["height"]
    )


def test_the_console_on_a_phone_from_the_acknowledge_link(
    topics: Settings, chdb_url: str, tmp_path: Path
) -> None:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: run `make test-deps` (Debian chromium)"
    shots = tmp_path / "screenshots"
    shots.mkdir()

    async def main() -> dict[str, Any]:
        bots = await FakeBots().start()
        console_port = free_port()
        settings = dispatch_settings(
            topics,
            tmp_path,
            bots,
            clickhouse_url=chdb_url,
            console_secret="phone-test-console-secret",
            console_credentials_file=str(tmp_path / "console-credentials.json"),
            console_base_url=f"http://127.0.0.1:{console_port}",
        )
        await asyncio.to_thread(load_example_roster, settings)
        Credentials(Path(settings.console_credentials_file)).set_password(GUARD, PASSWORD)
        writer = open_writer(chdb_url)
        migrate(writer, retention_days=settings.retention_days)
        stage = DispatcherStage(settings)
        sink = ActionSink(settings, writer, flush_s=0.2)
        await stage.start()
        await sink.start()
        tasks = [asyncio.create_task(stage.run()), asyncio.create_task(sink.run())]
        console = await start_console(settings, writer, host="127.0.0.1", port=console_port)
        try:
            async with decide_path(settings, writer):
                await console.ready()
                await asyncio.wait_for(stage.ready.wait(), 60)
                await asyncio.to_thread(produce_background, settings)
                return await on_the_phone(settings, console.url, bots)
        finally:
            await console.stop()
            await stage.stop()
            await sink.stop()
            for task in tasks:
                task.cancel()
            await bots.stop()
            writer.close()

    async def on_the_phone(settings: Settings, url: str, bots: FakeBots) -> dict[str, Any]:
        out: dict[str, Any] = {"overflow": {}}
        subject = fresh_example("TemperatureReading")["subject_id"]
        await asyncio.to_thread(produce_reading, settings, None, subject)
        await asyncio.to_thread(produce_reading, settings, "handheld", subject)
        (message,) = await until(
            lambda: [
                r
                for r in bots.of_kind("wecom")
                if "FEVER_CONFIRMED" in r.payload["text"]["content"]
            ][:1],
            30,
            "WeCom message of the confirmed fever",
        )
        link = LINK.findall(message.payload["text"]["content"])[0]
        alert_id = parse_qs(urlsplit(link).query)["a"][0]
        out["alert_id"] = alert_id
        async with playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            phone = await browser.new_context(
                viewport=PHONE,
                is_mobile=True,
                has_touch=True,
                device_scale_factor=2,
                user_agent=WECOM_UA,
                locale="zh-CN",
            )
            page = await phone.new_page()

            async def overflow(name: str) -> None:
                out["overflow"][name] = await page.evaluate(OVERFLOW)

            # the link in the WeCom message: acknowledged, and the way on to the console
            await page.goto(link)
            out["ack_page"] = await page.inner_text("h2")
            await overflow("acknowledge page")
            out["console_button"] = await box_of(page, "a#console")
            await page.tap("a#console")
            await page.wait_for_url(re.compile(r"/login\?next="))
            out["login_url"] = page.url
            await overflow("sign-in")
            await page.screenshot(path=str(shots / "phone-login.png"))
            await page.fill("input[name=staff_id]", GUARD)
            await page.fill("input[name=password]", PASSWORD)
            await page.tap("button[type=submit]")
            await page.wait_for_url(re.compile(rf"/alerts/{re.escape(alert_id)}$"))
            focused = f'#alerts tr.focus[data-alert-id="{alert_id}"]'
            await page.wait_for_selector(focused)
            await page.wait_for_selector("#live-status.on")
            out["first_row"] = await page.get_attribute("#alerts tbody tr", "data-alert-id")
            out["focused_status"] = await page.inner_text(f"{focused} td.status")
            await overflow("alert's page")

            # live: an alert produced after the page loaded appears, and is acknowledged
            known = await page.evaluate(
                "[...document.querySelectorAll('#alerts tbody tr')].map((r) => r.dataset.alertId)"
            )
            await asyncio.to_thread(produce_reading, settings, None, uuid.uuid4().hex)
            live = await page.wait_for_function(NEW_RECHECK, arg=known, timeout=30_000)
            live_id = await live.json_value()
            row = f'#alerts tr[data-alert-id="{live_id}"]'
            out["ack_button"] = await box_of(page, f"{row} button[data-act=ack]")
            await page.tap(f"{row} button[data-act=ack]")
            await page.wait_for_selector(
                f"{row}.st-ACK_REQUESTED, {row}.st-ACKNOWLEDGED", timeout=15_000
            )
            await overflow("live alerts")

            # the first reading's recheck, still open: resolved with a note
            recheck = await page.evaluate(
                """(known) => [...document.querySelectorAll('#alerts tbody tr.st-OPEN')]
                  .map((r) => r.dataset.alertId).find((id) => known.includes(id)) || null""",
                known,
            )
            assert recheck, "the first reading's recheck is open"
            other = f'#alerts tr[data-alert-id="{recheck}"]'
            await page.fill(f"{other} input[data-note]", "复测正常 recheck normal")
            out["resolve_button"] = await box_of(page, f"{other} button[data-act=resolve]")
            await page.tap(f"{other} button[data-act=resolve]")
            await page.wait_for_selector(f"{other}.st-RESOLVED", timeout=60_000)
            await page.evaluate("window.scrollTo(0, 0)")
            await page.screenshot(path=str(shots / "phone-alerts.png"))

            await page.goto(f"{url}/decisions")
            await page.wait_for_selector("#live-status.on")
            await overflow("gate decisions")
            out["decision_rows"] = await page.locator("#decisions tbody tr").count()
            await page.screenshot(path=str(shots / "phone-decisions.png"))

            await page.goto(f"{url}/silences")
            await page.wait_for_selector("#silences")
            await overflow("silences")

            # control: without the phone rules the alerts table does not fit the screen
            await page.goto(f"{url}/alerts")
            await page.wait_for_selector("#alerts tbody tr")
            await page.evaluate(WITHOUT_PHONE_RULES)
            out["control_overflow"] = await page.evaluate(OVERFLOW)

            # sign-in never sends the browser to another site
            stranger = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
            other_page = await stranger.new_page()
            await other_page.goto(f"{url}/login?next=https://evil.example/phish")
            out["foreign_next_field"] = await other_page.locator("input[name=next]").count()
            await other_page.fill("input[name=staff_id]", GUARD)
            await other_page.fill("input[name=password]", PASSWORD)
            await other_page.tap("button[type=submit]")
            await other_page.wait_for_selector("#alerts")
            out["foreign_next_landed"] = other_page.url
            await browser.close()
        return out

    out = asyncio.run(main())
    alert_id = out["alert_id"]
    print(f"\nphone: page widths (scrollWidth, clientWidth) {out['overflow']}")
    print(
        f"phone: buttons ack {out['ack_button']}, resolve {out['resolve_button']}, "
        f"console {out['console_button']}"
    )
    assert "已确认收到" in out["ack_page"]
    assert out["login_url"].endswith(f"/login?next=%2Falerts%2F{alert_id}")
    assert out["first_row"] == alert_id, "the alert of the link comes first"
    assert "确认" in out["focused_status"], out["focused_status"]
    assert set(out["overflow"]) == {
        "acknowledge page",
        "sign-in",
        "alert's page",
        "live alerts",
        "gate decisions",
        "silences",
    }
    for name, (scroll, client) in out["overflow"].items():
        assert client == PHONE["width"] and scroll <= client, (name, scroll, client)
    scroll, client = out["control_overflow"]
    assert scroll > client, "control: the check bites without the phone rules"
    for name in ("ack_button", "resolve_button", "console_button"):
        box = out[name]
        assert inside_the_screen(box), (name, box)
        assert box["height"] >= 44 and box["width"] >= 44, (name, box)
    assert out["decision_rows"] > 0
    assert out["foreign_next_field"] == 0
    assert urlsplit(out["foreign_next_landed"]).path == "/alerts"
    for name in ("phone-login", "phone-alerts", "phone-decisions"):
        png = shots / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
    keep = os.environ.get("FANGXIAN_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in shots.glob("phone-*.png"):
            shutil.copy(png, Path(keep) / png.name)
