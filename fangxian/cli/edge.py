"""``fangxian edge``: the gate edge, where devices meet fangxian (docs/edge.md); and
``fangxian load devices FILE.csv``, the device register it reads (called from ``load``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from pathlib import Path

from fangxian.cli.errors import PROBLEMS_FOUND, input_error, setting_error
from fangxian.core.settings import Settings


def cmd_edge(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from fangxian.edge.register import RegisterError
    from fangxian.edge.service import EdgeConfig, run_edge

    config = EdgeConfig.from_env()
    changes = {
        name: value
        for name, value in (
            ("host", args.host),
            ("port", args.port),
            ("register_path", args.register),
            ("outbox_path", args.outbox),
            ("metrics_port", args.metrics_port),
        )
        if value is not None
    }
    config = dataclasses.replace(config, **changes)
    if not settings.pseudonym_key:
        raise setting_error(
            "FANGXIAN_PSEUDONYM_KEY",
            "未设置：边缘网关在此把证件号、卡号、车牌变成假名",
            "is not set: the edge turns ID numbers, cards and plates into pseudonyms with it",
        )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await run_edge(settings, config, stop=stop)

    try:
        asyncio.run(main())
    except RegisterError as err:
        raise input_error(config.register_path, err.message_zh, err.message_en) from err
    return 0


def cmd_load_devices(args: argparse.Namespace, settings: Settings) -> int:
    """Validate a device register CSV, seal its credentials, write the edge's register file."""
    from fangxian.edge.register import RegisterError, SecretBox, load_devices, write_register

    path = Path(args.file)
    if not path.is_file():
        raise input_error(args.file, "文件不存在", "no such file")
    key = os.environ.get("FANGXIAN_EDGE_REGISTER_KEY", "")
    try:
        box = SecretBox(key) if key else None
    except RegisterError as err:  # pragma: no cover - empty key handled above
        raise input_error(args.file, err.message_zh, err.message_en) from err
    try:
        result = load_devices(path, box)
    except (UnicodeDecodeError, OSError) as err:
        raise input_error(args.file, f"无法读取 {err}", f"cannot read it: {err}") from err
    file_level = [p for p in result.errors if p.line in (0, 1)]
    if file_level and not result.records:
        raise input_error(args.file, file_level[0].message_zh, file_level[0].message_en)
    for problem in result.errors:
        print(
            f"✗ 第{problem.line}行 line {problem.line} [{problem.field}] "
            f"{problem.message_zh} / {problem.message_en}"
        )
    out = getattr(args, "out", None) or os.environ.get(
        "FANGXIAN_EDGE_REGISTER", "devices.register.json"
    )
    if args.dry_run:
        print(
            f"检查通过 checked: {len(result.records)} devices, {len(result.errors)} rows "
            "rejected (--dry-run: nothing written)"
        )
    else:
        write_register(result.records, out)
        print(
            f"已写入 wrote {len(result.records)} devices to {out} (credentials sealed); "
            f"拒绝 rejected rows: {len(result.errors)}"
        )
    return PROBLEMS_FOUND if result.errors else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    edge = sub.add_parser(
        "edge",
        help="边缘网关 the gate edge: Hikvision / plate cameras / QR readers / JSON API → Kafka, "
        "decisions back to the gate",
    )
    edge.add_argument("--host", help="listen address (FANGXIAN_EDGE_HOST, default 127.0.0.1)")
    edge.add_argument("--port", type=int, help="listen port (FANGXIAN_EDGE_PORT, default 8090)")
    edge.add_argument("--register", help="the sealed device register (FANGXIAN_EDGE_REGISTER)")
    edge.add_argument("--outbox", help="the outbox SQLite file (FANGXIAN_EDGE_OUTBOX)")
    edge.add_argument("--metrics-port", type=int, help="/metrics port (default 9111; -1 off)")
    edge.set_defaults(func=cmd_edge)
