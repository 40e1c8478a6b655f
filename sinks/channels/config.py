"""Channel targets from a JSON file kept beside the deployment, never in the repository (it
holds robot keys and secrets): ``{"<name>": {"kind": "wecom|dingtalk|feishu|webhook|sms",
"url": "...", "secret": "...", ...}}``. For ``sms``: ``endpoint``, ``access_key_id``,
``access_key_secret``, ``sign_name``, ``template_code`` (Aliyun-shaped ``SendSms``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sinks.channels.base import Channel
from sinks.channels.bots import DingTalkBot, FeishuBot, WeComBot
from sinks.channels.sms import AliyunSms, SmsChannel
from sinks.channels.webhook import JsonWebhook


class ChannelConfigError(ValueError):
    pass


def build_channel(name: str, spec: Mapping[str, Any]) -> Channel:
    kind = spec.get("kind")
    try:
        if kind == "wecom":
            return WeComBot(name, spec["url"])
        if kind == "dingtalk":
            return DingTalkBot(name, spec["url"], spec.get("secret", ""))
        if kind == "feishu":
            return FeishuBot(name, spec["url"], spec.get("secret", ""))
        if kind == "webhook":
            return JsonWebhook(name, spec["url"], spec["secret"])
        if kind == "sms":
            provider = AliyunSms(
                spec["endpoint"],
                spec["access_key_id"],
                spec["access_key_secret"],
                spec["sign_name"],
                spec["template_code"],
            )
            return SmsChannel(name, provider)
    except KeyError as err:
        raise ChannelConfigError(f"channel {name!r} ({kind}) lacks {err}") from None
    raise ChannelConfigError(f"channel {name!r}: unknown kind {kind!r}")


def build_channels(config: Mapping[str, Mapping[str, Any]]) -> dict[str, Channel]:
    channels = {}
    for name, spec in config.items():
        channel = build_channel(name, spec)
        if "rate_count" in spec:
            channel.rate_count = int(spec["rate_count"])
        if "rate_window_s" in spec:
            channel.rate_window_s = float(spec["rate_window_s"])
        channels[name] = channel
    return channels


def load_channels(path: str) -> dict[str, Channel]:
    if not path:
        return {}
    return build_channels(json.loads(Path(path).read_text(encoding="utf-8")))
