"""``fangxian simulate``: produce a simulated community to Kafka."""

from __future__ import annotations

import argparse

from fangxian.core.settings import Settings


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.demo import simulate_to_kafka

    sent = simulate_to_kafka(
        settings,
        communities=args.communities,
        residents=args.residents,
        rate=args.rate,
        duration_s=args.duration,
        seed=args.seed,
        with_reference=not args.no_reference,
    )
    print(f"produced 已发送 {sent} records")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser("simulate", help="produce a simulated community to Kafka")
    sim.add_argument("--communities", type=int, default=2)
    sim.add_argument("--residents", type=int, default=400)
    sim.add_argument("--rate", type=float, default=500.0)
    sim.add_argument("--duration", type=float, default=60.0, help="simulated seconds")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--no-reference", action="store_true", help="events only")
    sim.set_defaults(func=cmd_simulate)
