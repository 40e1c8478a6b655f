"""The ``fangxian`` command line: one module per command in this package, one way to register.

Every command module has ``register(sub)``, which adds its parser to the subparsers ``sub`` and
sets ``func`` to a ``Command`` — ``(args, settings) -> exit status``. ``COMMANDS`` lists the
modules in the order ``fangxian --help`` shows them; a new command is a new module here plus its
name in that list. Settings come from the environment (``FANGXIAN_*``) once, here, and are
passed down; the global flags override them. Command modules import their tools lazily, so
``fangxian --help`` stays quick.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Callable, Sequence

from fangxian.core.settings import Settings

log = logging.getLogger("fangxian")

Command = Callable[[argparse.Namespace, Settings], int]

COMMANDS: tuple[str, ...] = (
    "run",
    "worker",
    "topics",
    "acl",
    "db",
    "simulate",
    "report",
    "contacts",
    "forget",
    "load",
    "dispatch",
    "bench",
    "console",
)


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    changes = {}
    if getattr(args, "bootstrap", None):
        changes["kafka_bootstrap"] = args.bootstrap
    if getattr(args, "clickhouse", None):
        changes["clickhouse_url"] = args.clickhouse
    return settings.replace(**changes) if changes else settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fangxian", description="防线 fangxian — community epidemic-prevention streaming core"
    )
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (FANGXIAN_KAFKA_BOOTSTRAP)")
    p.add_argument("--clickhouse", help="clickhouse://… or chdb://path (FANGXIAN_CLICKHOUSE_URL)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kafka", "aiokafka"):  # client chatter; their warnings still show
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    func: Command = args.func
    return func(args, _settings(args))
