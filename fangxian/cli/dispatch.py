"""``fangxian dispatch``: the on-duty dispatcher as a process (``streams/dispatch/``)."""

from __future__ import annotations

import argparse
import asyncio

from fangxian.core.settings import SettingError, Settings


def cmd_dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.channels.config import ChannelConfigError
    from streams.dispatch.inhibition import InhibitConfigError
    from streams.dispatch.stage import serve

    try:
        asyncio.run(
            serve(
                settings,
                with_action_sink=not args.no_action_sink,
                idempotent_producer=settings.producer_idempotence,
            )
        )
    except ChannelConfigError as err:  # a missing key is a SettingError: the CLI explains it
        raise SettingError(
            "FANGXIAN_DISPATCH_CHANNELS_FILE", str(err), f"渠道配置文件无效：{err}"
        ) from err
    except InhibitConfigError as err:
        raise SettingError(
            "FANGXIAN_DISPATCH_INHIBIT_FILE", str(err), f"抑制规则文件无效：{err}"
        ) from err
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dispatch = sub.add_parser(
        "dispatch", help="值班派单 the on-duty dispatcher (alerts → staff, ack, escalation)"
    )
    dispatch.add_argument(
        "--no-action-sink",
        action="store_true",
        help="do not write alert.actions to ClickHouse from this process (the sink stage does)",
    )
    dispatch.set_defaults(func=cmd_dispatch)
