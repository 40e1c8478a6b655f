"""The contract codec's own speed, without Kafka: ``python -m fangxian.bench.codec_speed``.

Times ``Codec.decode`` (with value validation, as the worker decodes its input) over the
simulated event mix, the same without validation (the fastavro read alone), and
``Codec.encode`` of the decisions and alerts the rule engine makes from that mix.

Time is the thread's CPU time (``time.thread_time``), so the figures are events per CPU second:
on a shared machine, time spent preempted does not count against either codec.

``--baseline REV`` loads ``codec.py`` and ``validate.py`` as they were at git revision ``REV``
into this process under other module names (the unchanged ``contract`` and ``errors`` are
shared) and times both codecs in alternating rounds, so old and new see the same machine load.
Figures are the best and the median of the rounds, in events per second.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import schemas
from fangxian.bench.stats import rate
from fangxian.bench.workload import build_simulator, reference_pairs, simulated_events
from schemas import Codec

REPO_ROOT = Path(__file__).resolve().parents[2]

Payload = tuple[str, bytes]
Output = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Mix:
    """Encoded input events and the engine's outputs for them, for one run."""

    payloads: list[Payload]
    outputs: list[Output]


def simulated_mix(
    *, events: int, communities: int = 20, residents: int = 1000, seed: int = 11
) -> Mix:
    """The bench's prefill mix, encoded, and the decisions and alerts the rules make of it."""
    from streams.engine import RuleEngine

    codec = Codec()
    sim = build_simulator(communities=communities, residents=residents, seed=seed)
    pairs = simulated_events(sim, events)
    payloads = [(name, codec.encode(name, record)) for name, record in pairs]
    engine = RuleEngine()
    for name, record in reference_pairs(sim):
        {
            "Resident": engine.upsert_resident,
            "VisitorPass": engine.upsert_pass,
            "Vehicle": engine.upsert_vehicle,
            "CommunityRules": engine.upsert_rules,
        }[name](record)
    outputs: list[Output] = []
    handlers = {
        "GateScan": engine.on_scans,
        "TemperatureReading": engine.on_readings,
        "HealthReport": engine.on_reports,
    }
    for name, record in pairs:
        out = handlers[name]([record])
        outputs += [("GateDecision", d) for d in out.decisions]
        outputs += [("Alert", a) for a in out.alerts]
    return Mix(payloads, outputs)


def time_decode(codec: Any, payloads: Sequence[Payload], *, validate: bool = True) -> float:
    """Events per CPU second of ``codec.decode`` over ``payloads``."""
    decode = codec.decode
    started = time.thread_time()
    for name, payload in payloads:
        decode(name, payload, validate=validate)
    return rate(len(payloads), time.thread_time() - started)


def time_encode(codec: Any, outputs: Sequence[Output]) -> float:
    """Records per CPU second of ``codec.encode`` over ``outputs``."""
    encode = codec.encode
    started = time.thread_time()
    for name, record in outputs:
        encode(name, record)
    return rate(len(outputs), time.thread_time() - started)


def baseline_codec(revision: str) -> Any:
    """A ``Codec`` built from ``codec.py`` and ``validate.py`` at git ``revision``."""
    package = Path(schemas.__file__).resolve().parent.relative_to(REPO_ROOT).as_posix()

    def show(name: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), "show", f"{revision}:{package}/{name}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    tag = re.sub(r"\W", "_", revision)
    validate = _load(f"_baseline_{tag}_validate", show("validate.py"))
    codec_source = re.sub(
        r"^from [\w.]+\.validate import",
        f"from {validate.__name__} import",
        show("codec.py"),
        flags=re.M,
    )
    return _load(f"_baseline_{tag}_codec", codec_source).Codec()


def _load(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def _figures(samples: Sequence[float]) -> dict[str, float]:
    return {"best": max(samples), "median": statistics.median(samples)}


def compare(
    mix: Mix, codecs: dict[str, Any], *, rounds: int = 5
) -> dict[str, dict[str, dict[str, float]]]:
    """Per codec label: decode (validating), decode without validation, encode; best and
    median events/s over ``rounds`` rounds, the codecs alternating within each round."""
    timings: dict[str, dict[str, list[float]]] = {
        label: {"decode_validate": [], "decode_no_validate": [], "encode": []} for label in codecs
    }
    measures: dict[str, Callable[[Any], float]] = {
        "decode_validate": lambda c: time_decode(c, mix.payloads),
        "decode_no_validate": lambda c: time_decode(c, mix.payloads, validate=False),
        "encode": lambda c: time_encode(c, mix.outputs),
    }
    for codec in codecs.values():  # warm the plans and caches
        for measure in measures.values():
            measure(codec)
    for _ in range(rounds):
        for label, codec in codecs.items():
            for kind, measure in measures.items():
                timings[label][kind].append(measure(codec))
    return {
        label: {kind: _figures(samples) for kind, samples in kinds.items()}
        for label, kinds in timings.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fangxian.bench.codec_speed")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", help="git revision whose codec to time alongside")
    args = parser.parse_args(argv)
    mix = simulated_mix(events=args.events)
    codecs: dict[str, Any] = {}
    if args.baseline:
        codecs[f"baseline {args.baseline}"] = baseline_codec(args.baseline)
    codecs["current"] = Codec()
    results = compare(mix, codecs, rounds=args.rounds)
    print(
        json.dumps(
            {"events": len(mix.payloads), "outputs": len(mix.outputs), "codecs": results},
            indent=2,
        )
    )
    for label, kinds in results.items():
        print(
            f"{label:<28} "
            + "  ".join(
                f"{kind} {f['best']:>9,.0f}/CPU-s (median {f['median']:,.0f})"
                for kind, f in kinds.items()
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
