"""Every sender against a loopback server that implements its API's contract (infra.fake_bots):
signatures verified with the documented algorithm, errcodes answered with HTTP 200, rate
limits, 5xx and hangs. Controls: a wrong secret is refused by the server, so the checks bite."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from infra.fake_bots import FakeBotConfig, FakeBots
from sinks.channels.base import AckLink, Channel, OutgoingMessage, Recipient
from sinks.channels.bots import DingTalkBot, FeishuBot, WeComBot
from sinks.channels.delivery import Outcome, RetryPolicy, Sender
from sinks.channels.sms import AliyunSms, SmsChannel
from sinks.channels.webhook import JsonWebhook

GUARD = Recipient(
    staff_id="st-guard-01",
    display_name="王师傅",
    wecom_userid="wangshifu",
    wecom_mobile="13800000001",
    dingtalk_mobile="13800000001",
    feishu_open_id="ou_7d8a6e6df7621556ce0d21922b676706ccs",
    phone="13800000001",
)


def message(
    lines: tuple[str, ...] = ("东门复测体温 37.6 °C，确认发热。", "East gate: fever confirmed."),
) -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id="d-0001",
        headline="【紧急 CRITICAL】FEVER_CONFIRMED · east-gate",
        lines=lines,
        links=(AckLink(GUARD, "http://127.0.0.1:1/ack?a=x&s=st-guard-01&e=1&p=0&sig=abc"),),
        mentions=(GUARD,),
        severity="CRITICAL",
    )


FAST = RetryPolicy(max_tries=3, base_s=0.01, cap_s=0.05, timeout_s=0.5)


def run(
    body: Callable[[FakeBots, aiohttp.ClientSession], Awaitable[Any]],
    config: FakeBotConfig | None = None,
) -> Any:
    async def main() -> Any:
        bots = await FakeBots(config or FakeBotConfig(hang_s=2.0)).start()
        try:
            async with aiohttp.ClientSession() as session:
                return await body(bots, session)
        finally:
            await bots.stop()

    return asyncio.run(main())


def make(kind: str, bots: FakeBots, *, wrong_secret: bool = False) -> Channel:
    bad = "wrong-secret" if wrong_secret else None
    if kind == "wecom":
        return WeComBot("wecom:east", bots.wecom_url("wrong-key" if wrong_secret else "wecom-key"))
    if kind == "dingtalk":
        return DingTalkBot("dingtalk:east", bots.dingtalk_url(), bad or "ding-secret")
    if kind == "feishu":
        return FeishuBot("feishu:east", bots.feishu_url(), bad or "feishu-secret")
    if kind == "webhook":
        return JsonWebhook("webhook:console", bots.webhook_url(), bad or "hook-secret")
    provider = AliyunSms(bots.sms_url(), "sms-key-id", bad or "sms-key-secret", "防线", "SMS_0001")
    return SmsChannel("sms", provider)


KINDS = ["wecom", "dingtalk", "feishu", "webhook", "sms"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_message_is_accepted_with_the_right_signature(kind: str) -> None:
    async def body(bots: FakeBots, session: aiohttp.ClientSession) -> Outcome:
        sender = Sender({"t": make(kind, bots)}, session, retry=FAST)
        outcome = await sender.deliver("t", message())
        assert len(bots.of_kind(kind)) == 1
        return outcome

    assert run(body) == Outcome(True, 1)


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        pytest.param("wecom", "93000", id="wecom unknown key: errcode 93000 with HTTP 200"),
        pytest.param("dingtalk", "310000", id="dingtalk bad signature: errcode 310000"),
        pytest.param("feishu", "19021", id="feishu bad signature: code 19021"),
        pytest.param("webhook", "401", id="webhook bad signature: 401"),
        pytest.param("sms", "SignatureDoesNotMatch", id="sms bad signature"),
    ],
)
def test_a_wrong_secret_is_a_failure_not_a_delivery(kind: str, code: str) -> None:
    async def body(bots: FakeBots, session: aiohttp.ClientSession) -> Outcome:
        sender = Sender({"t": make(kind, bots, wrong_secret=True)}, session, retry=FAST)
        outcome = await sender.deliver("t", message())
        assert bots.of_kind(kind) == [] and bots.rejected
        return outcome

    outcome = run(body)
    assert not outcome.ok and outcome.code == code
    assert outcome.tries == 1, "a refused signature is not retried"


@pytest.mark.parametrize(
    ("kind", "mention_check"),
    [
        pytest.param(
            "wecom",
            lambda p: p["text"]["mentioned_list"] == ["wangshifu"],
            id="wecom mentioned_list",
        ),
        pytest.param(
            "dingtalk",
            lambda p: (
                p["at"]["atMobiles"] == ["13800000001"] and "@13800000001" in p["text"]["content"]
            ),
            id="dingtalk atMobiles and @mobile in the text",
        ),
        pytest.param(
            "feishu",
            lambda p: (
                '<at user_id="ou_7d8a6e6df7621556ce0d21922b676706ccs">王师傅</at>'
                in p["content"]["text"]
            ),
            id="feishu at tag",
        ),
        pytest.param("webhook", lambda p: p["mentions"] == ["st-guard-01"], id="webhook staff ids"),
        pytest.param(
            "sms",
            lambda p: p["PhoneNumbers"] == "13800000001" and "ack?" in p["TemplateParam"],
            id="sms to the phone with the link",
        ),
    ],
)
def test_mentions_use_each_channels_syntax(
    kind: str, mention_check: Callable[[dict[str, Any]], bool]
) -> None:
    async def body(bots: FakeBots, session: aiohttp.ClientSession) -> dict[str, Any]:
        await Sender({"t": make(kind, bots)}, session, retry=FAST).deliver("t", message())
        return bots.of_kind(kind)[0].payload

    assert mention_check(run(body))


@pytest.mark.parametrize("kind", ["wecom", "dingtalk", "feishu", "webhook", "sms"])
def test_5xx_and_a_hang_are_retried_with_backoff(kind: str) -> None:
    async def body(bots: FakeBots, session: aiohttp.ClientSession) -> Outcome:
        bots.inject(kind, "5xx", "timeout")
        sender = Sender({"t": make(kind, bots)}, session, retry=FAST)
        outcome = await sender.deliver("t", message())
        assert len(bots.of_kind(kind)) == 1
        return outcome

    assert run(body, FakeBotConfig(hang_s=1.5)) == Outcome(True, 3)


def test_control_without_retries_the_5xx_is_a_failure() -> None:
    async def body(bots: FakeBots, session: aiohttp.ClientSession) -> Outcome:
        bots.inject("wecom", "5xx")
        return await Sender(
            {"t": make("wecom", bots)}, session, retry=RetryPolicy(max_tries=1)
        ).deliver("t", message())

    outcome = run(body)
    assert not outcome.ok and outcome.code == "503"


def test_wecom_size_limit_cuts_the_body_and_keeps_the_link() -> None:
    long = ("很长的说明" * 300, "long English text " * 100)

    async def body(bots: FakeBots, session: aiohttp.ClientSession) -> str:
        outcome = await Sender({"t": make("wecom", bots)}, session, retry=FAST).deliver(
            "t", message(long)
        )
        assert outcome.ok
        content: str = bots.of_kind("wecom")[0].payload["text"]["content"]
        return content

    content = run(body)
    assert len(content.encode()) <= 2048
    assert content.startswith("【紧急 CRITICAL】") and "ack?a=x" in content and "…" in content


def test_control_the_server_refuses_an_oversized_text() -> None:
    async def body(bots: FakeBots, session: aiohttp.ClientSession) -> Any:
        async with session.post(
            bots.wecom_url(), json={"msgtype": "text", "text": {"content": "字" * 700}}
        ) as r:
            return await r.json()

    assert run(body)["errcode"] == 40058


def test_dingtalk_rate_limit_opens_the_breaker_for_the_block() -> None:
    async def body(bots: FakeBots, session: aiohttp.ClientSession) -> tuple[list[Outcome], Sender]:
        sender = Sender({"t": make("dingtalk", bots)}, session, retry=FAST)
        # the client's own limiter would hold the 3rd send back; bypass it to see the server's
        sender.limiters["t"].count = 1000
        outcomes = [await sender.deliver("t", message()) for _ in range(4)]
        return outcomes, sender

    outcomes, sender = run(body, FakeBotConfig(per_minute=2, dingtalk_block_s=600))
    assert [o.ok for o in outcomes] == [True, True, False, False]
    assert outcomes[2].code == "130101" and outcomes[2].tries == 1
    assert outcomes[3].code == "circuit_open" and outcomes[3].tries == 0, "blocked: no more calls"
    assert sender.breakers["t"].is_open


def test_client_side_rate_limit_waits_instead_of_hitting_the_server_limit() -> None:
    now = [0.0]
    slept: list[float] = []

    async def body(bots: FakeBots, session: aiohttp.ClientSession) -> list[Outcome]:
        async def sleep(s: float) -> None:
            slept.append(s)
            now[0] += s

        sender = Sender(
            {"t": make("feishu", bots)}, session, retry=FAST, clock=lambda: now[0], sleep=sleep
        )
        return [await sender.deliver("t", message()) for _ in range(7)]

    outcomes = run(body, FakeBotConfig(feishu_per_second=1000))
    assert all(o.ok for o in outcomes)
    assert slept == [1.0], "the 6th send waited for the next second of Feishu's 5/s window"


def test_control_without_the_client_limit_feishu_answers_9499() -> None:
    async def body(bots: FakeBots, session: aiohttp.ClientSession) -> list[Outcome]:
        sender = Sender({"t": make("feishu", bots)}, session, retry=RetryPolicy(max_tries=1))
        sender.limiters["t"].count = 1000
        return [await sender.deliver("t", message()) for _ in range(3)]

    outcomes = run(body, FakeBotConfig(feishu_per_second=2))
    assert [o.code for o in outcomes] == ["", "", "9499"]
    # the service answers a burst with HTTP 400 and 9499 "too many request": worth a retry
    assert outcomes[2].retryable


def test_feishu_flow_control_11232_is_a_failure_worth_a_later_retry() -> None:
    async def body(bots: FakeBots, session: aiohttp.ClientSession) -> tuple[Outcome, bool]:
        bots.inject("feishu", "flow_control")
        sender = Sender({"t": make("feishu", bots)}, session, retry=FAST)
        outcome = await sender.deliver("t", message())
        assert ("feishu", "flow_control") in bots.rejected and bots.of_kind("feishu") == []
        return outcome, sender.breakers["t"].is_open

    outcome, breaker_open = run(body)
    assert (outcome.ok, outcome.code, outcome.retryable) == (False, "11232", True)
    assert breaker_open, "the service asked to slow down: no more calls until the block ends"


@pytest.mark.parametrize("kind", ["dingtalk", "feishu"])
def test_a_long_chinese_text_fits_the_body_limit_on_the_wire(kind: str) -> None:
    long = ("东门复测体温，确认发热，请立即处置。" * 1500, "long English text " * 100)

    async def body(bots: FakeBots, session: aiohttp.ClientSession) -> Outcome:
        outcome = await Sender({"t": make(kind, bots)}, session, retry=FAST).deliver(
            "t", message(long)
        )
        assert bots.rejected == []
        return outcome

    assert run(body) == Outcome(True, 1)


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        pytest.param("dingtalk", 460101, 200, id="dingtalk body over 20000 bytes: 460101"),
        pytest.param("feishu", 9499, 400, id="feishu body over 20 KB: HTTP 400, 9499 Bad Request"),
    ],
)
def test_control_the_servers_refuse_an_oversized_body(kind: str, code: int, status: int) -> None:
    async def body(bots: FakeBots, session: aiohttp.ClientSession) -> tuple[int, Any]:
        channel = make(kind, bots)
        payload = channel.payload(message())  # type: ignore[attr-defined]
        payload["padding"] = "字" * 7000  # 21,000 bytes of UTF-8
        url = (
            channel.signed_url()  # type: ignore[attr-defined]
            if kind == "dingtalk"
            else bots.feishu_url()
        )
        from yarl import URL

        async with session.post(
            URL(url, encoded=True),
            data=json.dumps(payload, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
        ) as r:
            return r.status, await r.json()

    got_status, answer = run(body)
    assert (got_status, answer.get("errcode", answer.get("code"))) == (status, code)


def test_breaker_opens_after_repeated_failures_and_half_opens_later() -> None:
    now = [0.0]

    async def body(bots: FakeBots, session: aiohttp.ClientSession) -> list[Outcome]:
        async def no_sleep(_: float) -> None:
            return None

        sender = Sender(
            {"t": make("wecom", bots)},
            session,
            retry=RetryPolicy(max_tries=1),
            clock=lambda: now[0],
            sleep=no_sleep,
        )
        bots.inject("wecom", *["5xx"] * 5)
        outcomes = [await sender.deliver("t", message()) for _ in range(6)]
        now[0] = 31.0  # past cool_s
        outcomes.append(await sender.deliver("t", message()))
        return outcomes

    outcomes = run(body)
    assert [o.code for o in outcomes[:6]] == ["503"] * 5 + ["circuit_open"]
    assert outcomes[6].ok, "half-open trial goes through and closes the breaker"


def test_backoff_is_full_jitter_within_the_cap() -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=4.0)
    rng = random.Random(1)
    waits = [policy.backoff_s(attempt, rng) for attempt in (1, 2, 3, 4, 5, 6) for _ in range(50)]
    assert all(0 <= w <= 4.0 for w in waits)
    assert len({round(w, 3) for w in waits}) > 100, "jittered, not fixed"


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        pytest.param(
            "POST http://h/cgi-bin/webhook/send?key=abc123 failed",
            "POST http://h/cgi-bin/webhook/send?key=*** failed",
            id="wecom key",
        ),
        pytest.param(
            "http://h/robot/send?access_token=T0K&timestamp=1&sign=S%2B",
            "http://h/robot/send?access_token=***&timestamp=***&sign=***",
            id="dingtalk token and signature",
        ),
        pytest.param(
            "http://h/open-apis/bot/v2/hook/f19abc",
            "http://h/open-apis/bot/v2/hook/***",
            id="feishu hook",
        ),
    ],
)
def test_error_texts_never_carry_robot_keys(text: str, scrubbed: str) -> None:
    from sinks.channels.delivery import scrub

    assert scrub(text) == scrubbed


def test_outcomes_say_whether_a_later_retry_is_worth_it() -> None:
    async def body(bots: FakeBots, session: aiohttp.ClientSession) -> tuple[Outcome, Outcome]:
        bots.inject("wecom", "5xx", "5xx", "5xx")
        exhausted = await Sender({"t": make("wecom", bots)}, session, retry=FAST).deliver(
            "t", message()
        )
        refused = await Sender(
            {"t": make("wecom", bots, wrong_secret=True)}, session, retry=FAST
        ).deliver("t", message())
        return exhausted, refused

    exhausted, refused = run(body)
    assert exhausted.retryable and not exhausted.ok
    assert not refused.retryable and not refused.ok
