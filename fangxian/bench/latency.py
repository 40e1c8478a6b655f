"""Decision latency at fixed offered loads, on two clocks.

The scan and decision topics of the latency phase are created with
``message.timestamp.type=LogAppendTime``, so the broker stamps every message as it appends it.
A paced load generator in its own process (``fangxian.bench.loadgen``, confluent-kafka) sends
gate scans; a reader thread here (confluent-kafka) reads ``gate.decisions`` and matches each
decision to its scan by ``event_id``. Per load:

- ``client``: decision received by the reader − scan handed to the producer (this machine's
  wall clock, two processes): what a person at the gate would see, harness overheads included;
- ``broker``: decision appended − scan appended (the broker's clock): the worker's part alone —
  fetch, decide, produce — without the load generator's or the reader's delays;
- ``decide_lag``: the worker's own ``fangxian_decision_lag_seconds`` histogram over the load
  (per batch: oldest message's broker timestamp → decisions handed to the producer), as
  bucket-estimated percentiles; and ``gc``, the worker's collector pauses during the load.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from fangxian.bench.loadgen import id_prefix, new_base, seq_of
from fangxian.bench.stats import (
    Histogram,
    histogram_delta,
    histogram_summary,
    latency_summary,
    rate,
)
from fangxian.core.settings import Settings
from schemas import Codec

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
#: topic config the latency phase creates its scan and decision topics with
LOG_APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
CLOCKS = {
    "client": "decision received by the harness − scan handed to the producer (wall clock)",
    "broker": "decision appended − scan appended (broker LogAppendTime)",
    "decide_lag": "worker's fangxian_decision_lag_seconds per batch (bucket estimates)",
}


@dataclass
class _Load:
    """The decisions seen for one load's scans, by ``seq``."""

    prefix: str
    received_ms: dict[int, float] = field(default_factory=dict)
    appended_ms: dict[int, int | None] = field(default_factory=dict)


class DecisionReader:
    """A confluent-kafka consumer on every partition of the decision topic, from its current
    end, in a thread; records each decision for the load being measured."""

    def __init__(self, settings: Settings, codec: Codec) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._topic = settings.topics.gate_decisions
        self._codec = codec
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": "bench-latency-reader",  # assign() only: nothing is committed
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
            }
        )
        meta = self._consumer.list_topics(self._topic, timeout=30)
        parts = sorted(meta.topics[self._topic].partitions)
        assignment = []
        for p in parts:
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(self._topic, p), timeout=30
            )
            assignment.append(TopicPartition(self._topic, p, high))
        self._consumer.assign(assignment)
        self.load = _Load(prefix="")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decision-reader", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> DecisionReader:
        self._thread.start()
        return self

    def _run(self) -> None:
        from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

        decode = self._codec.decode
        try:
            while not self._stop.is_set():
                messages = self._consumer.consume(num_messages=5_000, timeout=0.05)
                now_ms = time.time() * 1000
                load = self.load
                for msg in messages:
                    if msg.error() is not None:
                        continue
                    decision = decode("GateDecision", cast(bytes, msg.value()), validate=False)
                    seq = seq_of(decision["event_id"], load.prefix)
                    if seq is None or seq in load.received_ms:
                        continue  # another load's scan, or a replay's second decision
                    load.received_ms[seq] = now_ms
                    kind, ts = msg.timestamp()
                    load.appended_ms[seq] = ts if kind == TIMESTAMP_LOG_APPEND_TIME else None
        except BaseException as err:  # surfaced by the harness
            self.error = err
            raise

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()


def run_loadgen(
    settings: Settings,
    templates: Sequence[dict[str, Any]],
    rate_per_s: float,
    duration_s: float,
    base: int,
    scratch: Path,
) -> dict[str, Any]:
    """Run ``fangxian.bench.loadgen`` for one load and return what it wrote."""
    job_path = scratch / f"loadgen-{int(rate_per_s)}.json"
    out_path = scratch / f"loadgen-{int(rate_per_s)}-out.json"
    job = {
        "bootstrap": settings.kafka_bootstrap,
        "topics": asdict(settings.topics),
        "templates": list(templates),
        "base": base,
        "rate_per_s": rate_per_s,
        "duration_s": duration_s,
        "out": str(out_path),
    }
    job_path.write_text(json.dumps(job), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run(
        [sys.executable, "-m", "fangxian.bench.loadgen", str(job_path)],
        check=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=duration_s + 300,
        capture_output=True,
    )
    result: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
    return result


def _drain(reader: DecisionReader, expected: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(reader.load.received_ms) < expected and time.monotonic() < deadline:
        if reader.error is not None:
            raise RuntimeError("the decision reader failed") from reader.error
        time.sleep(0.05)


def load_figures(
    offered: float, sent: dict[str, Any], load: _Load, lag: Histogram | None
) -> dict[str, Any]:
    """One load's figures from what the load generator sent and the reader saw."""
    sent_ms: list[float] = sent["sent_ms"]
    scan_appended: list[int | None] = sent["append_ms"]
    # the reader thread may still add late decisions: figures over a copy taken now
    received = dict(load.received_ms)
    appended_ms = dict(load.appended_ms)
    client = [received[s] - sent_ms[s] for s in received if s < len(sent_ms)]
    broker = []
    for s, decided in appended_ms.items():
        appended = scan_appended[s] if s < len(scan_appended) else None
        if decided is not None and appended is not None:
            broker.append(float(decided - appended))
    return {
        "offered_per_s": offered,
        "achieved_per_s": rate(sent["sent"], sent["seconds"]),
        "sent": sent["sent"],
        "decided": len(client),
        "missing": sent["sent"] - len(client),
        "client": latency_summary(client),
        "broker": latency_summary(broker),
        "broker_stamped": len(broker),
        "decide_lag": histogram_summary(lag) if lag is not None else None,
    }


def measure_latency(
    settings: Settings,
    codec: Codec,
    templates: Sequence[dict[str, Any]],
    loads: Sequence[float],
    *,
    duration_s: float,
    snapshot: Callable[[], dict[str, Any]] | None = None,
    warmup_s: float = 2.0,
    drain_s: float = 15.0,
) -> list[dict[str, Any]]:
    """One figure dict per offered load (events/s), against a worker already running on
    ``settings``' topics (scan and decision topics created with ``LOG_APPEND_TIME``)."""
    reader = DecisionReader(settings, codec).start()
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="fangxian-loadgen-") as tmp:
            scratch = Path(tmp)
            # warm-up: the worker joins its group and serves the first decisions
            base = new_base()
            reader.load = _Load(id_prefix(base))
            warm = run_loadgen(settings, templates, 200.0, warmup_s, base, scratch)
            _drain(reader, warm["sent"], 60.0)
            if len(reader.load.received_ms) < warm["sent"]:
                raise RuntimeError("decisions missing after the warm-up: is the worker running?")
            for offered in loads:
                base = new_base()
                load = _Load(id_prefix(base))
                reader.load = load
                before = snapshot() if snapshot else None
                sent = run_loadgen(settings, templates, offered, duration_s, base, scratch)
                _drain(reader, sent["sent"], drain_s)
                after = snapshot() if snapshot else None
                lag = None
                if after and before:
                    lag = histogram_delta(after["decision_lag"], before["decision_lag"])
                figures = load_figures(offered, sent, load, lag)
                if after:
                    figures["gc"] = after.get("gc")  # the worker's collector pauses in the load
                log.info("latency at %.0f/s: %s", offered, figures)
                results.append(figures)
                time.sleep(1.0)
    finally:
        reader.stop()
    return results
