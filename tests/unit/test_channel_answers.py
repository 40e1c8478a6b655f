"""What each group robot's answer means, as a table of cases: success, a failure worth another
try (and how long the service asked us to wait), or a final refusal. The answers are the
services' own, as their public docs and answers seen from the live services give them; each
case names where it comes from (the full list with links: docs/dispatch.md, "Vendor answer
codes")."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from sinks.channels.base import DeliveryError
from sinks.channels.bots import dingtalk_refusal, feishu_refusal, json_body, wecom_refusal

Judge = Callable[[int, Mapping[str, Any] | None], DeliveryError | None]
OK, FINAL = "ok", "final"


def retry(block_s: float = 0.0) -> tuple[str, float]:
    return "retry", block_s


@pytest.mark.parametrize(
    ("judge", "status", "body", "expected", "code"),
    [
        # -- WeCom group robot
        pytest.param(wecom_refusal, 200, {"errcode": 0, "errmsg": "ok"}, OK, "", id="wecom ok"),
        pytest.param(
            wecom_refusal,
            200,
            {"errcode": 45009, "errmsg": "api freq out of limit, hint: [1621497478_50_a3e6]"},
            retry(60.0),
            "45009",
            id="wecom 45009 over 20/min (WxJava WxCpErrorMsgEnum; robot doc 20 msg/min)",
        ),
        pytest.param(
            wecom_refusal,
            200,
            {"errcode": 45033, "errmsg": "api concurrent out of limit"},
            retry(60.0),
            "45033",
            id="wecom 45033 concurrent calls over the limit (WxJava WxCpErrorMsgEnum)",
        ),
        pytest.param(
            wecom_refusal,
            200,
            {"errcode": 93000, "errmsg": "invalid webhook url, hint: [5549643699454838579293796]"},
            FINAL,
            "93000",
            id="wecom 93000 invalid webhook url (qd-today/qd#586)",
        ),
        pytest.param(
            wecom_refusal,
            200,
            {
                "errcode": 40058,
                "errmsg": "markdown.content exceed max length 4096. invalid Request Parameter",
            },
            FINAL,
            "40058",
            id="wecom 40058 content over the limit (RayWangQvQ/BiliBiliTool#569)",
        ),
        pytest.param(
            wecom_refusal,
            200,
            {"errcode": 40008, "errmsg": "invalid message type"},
            FINAL,
            "40008",
            id="wecom 40008 invalid msgtype (WxJava WxCpErrorMsgEnum)",
        ),
        pytest.param(
            wecom_refusal,
            200,
            {"errcode": -1, "errmsg": "system busy"},
            retry(),
            "-1",
            id="wecom -1 system busy: try again (global codes)",
        ),
        # -- DingTalk custom robot
        pytest.param(
            dingtalk_refusal, 200, {"errcode": 0, "errmsg": "ok"}, OK, "", id="dingtalk ok"
        ),
        pytest.param(
            dingtalk_refusal,
            200,
            {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"},
            retry(600.0),
            "130101",
            id="dingtalk 130101 over 20/min: blocked 10 minutes (robot doc)",
        ),
        pytest.param(
            dingtalk_refusal,
            200,
            {"errcode": 310000, "errmsg": "sign not match, more: [https://ding-doc.dingtalk.com]"},
            FINAL,
            "310000",
            id="dingtalk 310000 sign not match (x-cold/dingtalk-robot#7)",
        ),
        pytest.param(
            dingtalk_refusal,
            200,
            {"errcode": 310000, "errmsg": "description:机器人发送签名不匹配;solution:请确认签名"},
            FINAL,
            "310000",
            id="dingtalk 310000 in the newer wording (megaease/easeprobe#202)",
        ),
        pytest.param(
            dingtalk_refusal,
            200,
            {"errcode": 300001, "errmsg": "token is not exist"},
            FINAL,
            "300001",
            id="dingtalk 300001 token is not exist (timonwong/prometheus-webhook-dingtalk#91)",
        ),
        pytest.param(
            dingtalk_refusal,
            200,
            {"errcode": 300005, "errmsg": "token is not exist"},
            FINAL,
            "300005",
            id="dingtalk 300005 token is not exist (timonwong/prometheus-webhook-dingtalk#226)",
        ),
        pytest.param(
            dingtalk_refusal,
            200,
            {
                "errcode": 460101,
                "errmsg": "description: body 大小不合法;solution:请保持大小在 20000bytes 以内;",
            },
            FINAL,
            "460101",
            id="dingtalk 460101 body over 20000 bytes (timonwong/prometheus-webhook-dingtalk#222)",
        ),
        # -- Feishu custom robot
        pytest.param(
            feishu_refusal,
            200,
            {"code": 0, "msg": "success", "data": {}, "StatusCode": 0},
            OK,
            "",
            id="feishu ok",
        ),
        pytest.param(
            feishu_refusal,
            200,
            {"StatusCode": 0, "StatusMessage": "success"},
            OK,
            "",
            id="feishu ok in the older fields",
        ),
        pytest.param(
            feishu_refusal,
            400,
            {"code": 9499, "msg": "too many request", "data": {}},
            retry(1.0),
            "9499",
            id="feishu burst: HTTP 400 and 9499 too many request (ccfos/nightingale#1437)",
        ),
        pytest.param(
            feishu_refusal,
            400,
            {"code": 9499, "msg": "Bad Request", "data": {}},
            FINAL,
            "9499",
            id="feishu 9499 Bad Request: malformed or over 20 KB, not retried (robot doc)",
        ),
        pytest.param(
            feishu_refusal,
            200,
            {"code": 11232, "msg": "frequency limited", "data": {}},
            retry(1.0),
            "11232",
            id="feishu 11232 flow control (robot doc: 100/min, 5/s)",
        ),
        pytest.param(
            feishu_refusal,
            200,
            {
                "code": 19021,
                "data": {},
                "msg": "sign match fail or timestamp is not within one hour from current time",
            },
            FINAL,
            "19021",
            id="feishu 19021 bad signature (feiyu563/PrometheusAlert#422)",
        ),
        pytest.param(
            feishu_refusal,
            200,
            {"code": 19024, "msg": "Key Words Not Found"},
            FINAL,
            "19024",
            id="feishu 19024 keyword check (robot doc)",
        ),
        pytest.param(
            feishu_refusal,
            200,
            {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"},
            FINAL,
            "19001",
            id="feishu 19001 unknown hook (sansan0/TrendRadar#278)",
        ),
        # -- answers without the vendor's code: judged by the HTTP status
        pytest.param(wecom_refusal, 502, None, retry(), "502", id="a proxy's 502 page: retry"),
        pytest.param(feishu_refusal, 429, None, retry(), "429", id="HTTP 429 without a body"),
        pytest.param(dingtalk_refusal, 404, None, FINAL, "404", id="HTTP 404: wrong URL, final"),
        pytest.param(
            dingtalk_refusal,
            200,
            {"ok": True},
            retry(),
            "bad_body",
            id="HTTP 200 without a code is not the documented success",
        ),
        pytest.param(
            feishu_refusal,
            400,
            None,
            FINAL,
            "400",
            id="control: HTTP 400 without a body is final",
        ),
    ],
)
def test_what_an_answer_means(
    judge: Judge,
    status: int,
    body: Mapping[str, Any] | None,
    expected: str | tuple[str, float],
    code: str,
) -> None:
    refusal = judge(status, body)
    if expected == OK:
        assert refusal is None
        return
    assert refusal is not None
    assert refusal.code == code
    if expected == FINAL:
        assert not refusal.retryable and refusal.block_s == 0.0
    else:
        assert isinstance(expected, tuple)
        assert refusal.retryable and refusal.block_s == expected[1]


def test_bodies_are_sent_as_utf8_so_the_size_limits_count_real_bytes() -> None:
    text = "东门复测体温 37.6 °C" * 100
    body = json_body({"content": {"text": text}})
    assert "东门".encode() in body, "not \\u-escaped"
    assert len(body) < 2 * len(text.encode()), "a \\u-escaped body would be twice the size"
