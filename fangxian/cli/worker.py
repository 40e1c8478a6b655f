"""``fangxian worker``: the decide and sink stages as two supervised processes
(``fangxian/worker.py``); ``--role decide|sink`` runs one stage in this process."""

from __future__ import annotations

import argparse

from fangxian.core.settings import Settings


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.worker import run_worker

    passed = []  # the children read the same environment; flags are passed on as flags
    if args.bootstrap:
        passed += ["--bootstrap", args.bootstrap]
    if args.clickhouse:
        passed += ["--clickhouse", args.clickhouse]
    return run_worker(args.role, settings, passed)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser(
        "worker", help="the stream worker: decide and sink stages as two supervised processes"
    )
    worker.add_argument(
        "--role",
        choices=["decide", "sink"],
        help="run one stage in this process (default: both, as supervised child processes)",
    )
    worker.set_defaults(func=cmd_worker)
