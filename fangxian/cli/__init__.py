"""The ``fangxian`` command line: one module per command in this package, one way to register.

Every command module has ``register(sub)``, which adds its parser to the subparsers ``sub`` and
sets ``func`` to a ``Command`` — ``(args, settings) -> exit status``. ``COMMANDS`` lists the
modules in the order ``fangxian --help`` shows them; a new command is a new module here plus its
name in that list. Settings come from the environment (``FANGXIAN_*``) once, here, and are
passed down; the global flags override them. Command modules import their tools lazily, so
``fangxian --help`` stays quick.

Failures go one way (``errors.py``): a foreseeable one — a service unreachable, credentials
refused, a topic or table missing, a bad input file, a missing setting — ends in two lines
(zh-CN, English) naming what to check and its own exit code; ``-v`` (anywhere on the command
line) adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from fangxian.cli.errors import classify
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
    "silence",
    "bench",
    "doctor",
    "console",
    "edge",
)
# Client libraries that log a failed connect on their own; the error path says it once, better.
QUIET_LOGGERS = ("kafka", "aiokafka", "clickhouse_driver")


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
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    _verbose_everywhere(sub)
    return p


def _verbose_everywhere(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``-v`` after the command name too (``fangxian load -v residents f.csv``)."""
    for parser in set(sub.choices.values()):
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            for child in nested:
                _verbose_everywhere(child)
        elif "-v" not in parser._option_string_actions:
            parser.add_argument(
                "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                help="debug logs and tracebacks",
            )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = bool(args.verbose)
    # Commands print what they did; library logs are for -v (warnings always show).
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    # FANGXIAN_LOG_LEVELS="streams.stages.decide=INFO,fangxian.edge=DEBUG": one part louder
    for item in os.environ.get("FANGXIAN_LOG_LEVELS", "").split(","):
        name, _, level = item.partition("=")
        if name.strip() and level.strip().upper() in logging.getLevelNamesMapping():
            logging.getLogger(name.strip()).setLevel(level.strip().upper())
    func: Command = args.func
    settings: Settings | None = None
    try:
        settings = _settings(args)
        return func(args, settings)
    except (Exception, KeyboardInterrupt) as err:
        failure = classify(err, settings)
        if verbose:
            traceback.print_exception(err)
        for line in failure.lines():
            print(line, file=sys.stderr)
        return failure.exit_code
