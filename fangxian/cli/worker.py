"""``fangxian worker``: the production Faust worker (``streams/app.py``)."""

from __future__ import annotations

import argparse
import sys

from fangxian.core.settings import Settings


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.app import create_app

    app = create_app(settings)
    sys.argv = [sys.argv[0], "worker", "--loglevel", args.loglevel]
    app.main()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser("worker", help="the production Faust worker")
    worker.add_argument("--loglevel", default="info")
    worker.set_defaults(func=cmd_worker)
