"""``fangxian run``: the embedded demo (Tansu broker + worker + chdb + simulator)."""

from __future__ import annotations

import argparse

from fangxian.core.settings import Settings


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.demo import run_demo

    return run_demo(
        settings,
        duration_s=args.duration,
        rate=args.rate,
        seed=args.seed,
        communities=args.communities,
        residents=args.residents,
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="embedded demo: Tansu broker + worker + chdb + simulator")
    run.add_argument("--duration", type=float, default=0, help="seconds (0 = until Ctrl-C)")
    run.add_argument("--rate", type=float, default=800.0, help="events per second (wall clock)")
    run.add_argument("--seed", type=int, default=7)
    run.add_argument("--communities", type=int, default=2)
    run.add_argument("--residents", type=int, default=300)
    run.set_defaults(func=cmd_run)
