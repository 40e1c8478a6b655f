"""A deploy during a ClickHouse outage: ``fangxian worker`` (decide, sink and the on-duty
dispatcher) starts although its ClickHouse URL points at a port nobody listens on, the gates get
their decisions from Kafka, the sink says (zh-CN first) that it waits and shows it on
``fangxian_sink_waiting_for_clickhouse``; once ClickHouse answers, the sink migrates the
database and writes what was decided meanwhile.

Control: ``fangxian worker --role sink`` alone — the role set that needs ClickHouse, which is
all the old preflight let start — decides nothing and writes nothing while ClickHouse is away,
so the first check above can fail.

ClickHouse "comes up" by opening a TCP forwarder on that port to the session's server."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer

from fangxian.core.settings import Settings
from fangxian.ingest.produce import RecordProducer
from infra.clickhouse_server import ClickHouseServer
from infra.ports import LOOPBACK, free_port
from schemas import Codec
from tests.conftest import unique_name
from tests.integration.pipeline_harness import fresh_example
from tests.integration.test_worker_processes import _children, _env, _metrics, _wait

WAITING = "fangxian_sink_waiting_for_clickhouse"


class Forwarder:
    """ClickHouse on ``port`` once ``start()``ed: every connection is piped to ``target``."""

    def __init__(self, port: int, target: int) -> None:
        self.port = port
        self.target = target
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((LOOPBACK, self.port))
        server.listen(32)
        self._server = server
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection((LOOPBACK, self.target))
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for s in [*self._open, *([self._server] if self._server else [])]:
            with contextlib.suppress(OSError):
                s.close()


@contextlib.contextmanager
def _worker(settings: Settings, log_path: Path, *role: str, **env: str) -> Iterator[Any]:
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fangxian.cli", "worker", *role],
            env={**_env(settings), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _decided(settings: Settings, event_ids: set[str], timeout_s: float) -> set[str]:
    """Which of ``event_ids`` have a committed decision on gate.decisions within the time."""
    consumer = KafkaConsumer(
        settings.topics.gate_decisions,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        for message in consumer:
            seen.add(Codec().decode("GateDecision", message.value)["event_id"])
            if event_ids <= seen or time.monotonic() > deadline:
                break
    finally:
        consumer.close()
    return seen & event_ids


def _send_red_scan(settings: Settings) -> str:
    scan = fresh_example("GateScan", "resident_qr", health_code="RED")
    producer = RecordProducer(settings)
    producer.send("GateScan", scan)
    producer.close()
    return str(scan["event_id"])


def test_worker_decides_while_clickhouse_is_down_and_writes_once_it_is_up(
    topics: Settings, clickhouse_server: ClickHouseServer, tmp_path: Path
) -> None:
    database = unique_name("test_")
    port = free_port()
    real = clickhouse_server.url_for(database)
    settings = topics.replace(
        clickhouse_url=real.replace(f":{clickhouse_server.tcp_port}/", f":{port}/"),
        web_port=free_port(),
        metrics_port=free_port(),
        sink_metrics_port=free_port(),
        dispatch_metrics_port=free_port(),
        ack_port=free_port(),
    )
    forwarder = Forwarder(port, clickhouse_server.tcp_port)
    first = _send_red_scan(settings)
    try:
        # control: the sink alone (what the old preflight allowed, given ClickHouse) decides
        # nothing and, with ClickHouse away, writes nothing; a SIGTERM ends its waiting
        control_log = tmp_path / "sink-only.log"
        with _worker(settings, control_log, "--role", "sink") as sink_only:
            _wait(
                "the sink-only worker waiting",
                lambda: f"{WAITING} 1.0" in _metrics_or_empty(settings.sink_metrics_port),
                timeout_s=30,
            )
            assert _decided(settings, {first}, timeout_s=3) == set()
            assert sink_only.poll() is None  # waiting, not exited (the old preflight: exit 8)
        assert sink_only.returncode == 0
        text = control_log.read_text(errors="replace")
        assert "ClickHouse 不可用，写入阶段等待重试 / ClickHouse unavailable, sink waiting" in text

        # the worker with all roles, ClickHouse still away
        log_path = tmp_path / "worker.log"
        keys = {"FANGXIAN_ROSTER_KEY": "test-only-roster", "FANGXIAN_ACK_LINK_KEY": "test-ack"}
        with _worker(settings, log_path, **keys) as worker:
            second = _send_red_scan(settings)
            assert _decided(settings, {first, second}, timeout_s=45) == {first, second}
            children = _children(worker.pid)
            assert set(children) == {"decide", "sink", "dispatch"}, children
            assert f"{WAITING} 1.0" in _metrics(settings.sink_metrics_port)
            text = log_path.read_text(errors="replace")
            assert text.count("ClickHouse 不可用，写入阶段等待重试") == 1  # said once, not per try
            assert "ClickHouse 不可用，派单动作写入等待重试" in text  # the dispatcher's writer too
            assert "阶段退出" not in text  # no child crashed and was restarted

            forwarder.start()  # ClickHouse is back
            client = clickhouse_server.client()
            try:
                # each table is its own insert (no order between them): wait for both
                rows = _wait(
                    "the sink writing once ClickHouse is up",
                    lambda: (
                        min(
                            _count(client, database, "gate_decisions"),
                            _count(client, database, "gate_scans"),
                        )
                        >= 2
                    ),
                    timeout_s=40,
                )
                assert rows
                scans = client.execute(f"SELECT event_id FROM {database}.gate_scans")
                assert {str(r[0]) for r in scans} >= {first, second}
            finally:
                client.disconnect()
            assert f"{WAITING} 0.0" in _metrics(settings.sink_metrics_port)
            assert "ClickHouse 已可用" in log_path.read_text(errors="replace")
            assert _children(worker.pid) == children  # nobody was restarted on the way
        assert worker.returncode == 0
    finally:
        forwarder.close()
        client = clickhouse_server.client()
        try:
            client.execute(f"DROP DATABASE IF EXISTS {database}")
        finally:
            client.disconnect()


def _metrics_or_empty(port: int) -> str:
    try:
        return _metrics(port)
    except OSError:
        return ""  # the process is still importing


def _count(client: Any, database: str, table: str) -> int:
    try:
        ((n,),) = client.execute(f"SELECT count() FROM {database}.{table}")
    except Exception:  # the sink has not migrated yet
        return 0
    return int(n)
