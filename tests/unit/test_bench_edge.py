"""The bench's edge phase, its pure parts: when a load counts as sustained, which loads the probe
tries next, the edge's /metrics read back, the fleet's register, the devices' HTTP reader."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fangxian.bench.edge import (
    answer_delta,
    build_fleet,
    devices_for,
    next_probe,
    parse_edge_metrics,
    sustainable,
)
from fangxian.bench.edge_devices import read_response, request_body
from fangxian.bench.harness import summary_table
from fangxian.bench.workload import build_simulator
from fangxian.cli.bench import config_from_args, register
from fangxian.edge.adapter import DeviceRequest
from fangxian.edge.adapters.generic import GenericJsonAdapter
from fangxian.edge.adapters.plate import PlateCameraAdapter
from fangxian.edge.adapters.qr import QrReaderAdapter
from fangxian.edge.meter import EdgeMetrics
from fangxian.edge.register import Register, write_register


def _load(**changes: Any) -> dict[str, Any]:
    load: dict[str, Any] = {
        "offered_per_s": 1000.0,
        "achieved_per_s": 990,
        "scheduled": 10_000,
        "answered": 10_000,
        "errors": {},
        "fallback_share": 0.0,
    }
    load.update(changes)
    return load


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        pytest.param(_load(), True, id="all answered by the core at the offered rate"),
        pytest.param(_load(fallback_share=0.01), True, id="1 % fallback is still sustained"),
        pytest.param(_load(fallback_share=0.02), False, id="the core late for 2 %"),
        pytest.param(_load(answered=9_999), False, id="a scan never answered"),
        pytest.param(_load(achieved_per_s=940), False, id="sends stretched: below 95 %"),
        pytest.param(_load(errors={"TimeoutError": 1}), False, id="a device gave up"),
        pytest.param(_load(fallback_share=None), False, id="no waiting request counted"),
    ],
)
def test_sustainable(load: dict[str, Any], expected: bool) -> None:
    assert sustainable(load) is expected


@pytest.mark.parametrize(
    ("tried", "expected"),
    [
        pytest.param({200: True, 1000: True}, 1500, id="both fixed loads held: upwards"),
        pytest.param({200: True, 1000: False}, 447, id="between the held and the failed load"),
        pytest.param({200: True, 1000: False, 447: True}, 669, id="then between again"),
        pytest.param({200: True, 1000: False, 447: True, 669: False}, 547, id="narrowing"),
        pytest.param({500: True, 580: False}, None, id="within 20 %: found"),
        pytest.param({200: False, 1000: False}, 133, id="none held: downwards"),
        pytest.param(
            {200: False, 133: False, 89: False, 59: False, 40: False, 27: False, 18: False},
            None,
            id="nothing held down to a tenth: give up",
        ),
    ],
)
def test_next_probe(tried: dict[float, bool], expected: float | None) -> None:
    results = [{"offered_per_s": rate, "sustainable": ok} for rate, ok in tried.items()]
    assert next_probe(results) == expected


def test_edge_metrics_read_back_and_differenced() -> None:
    registry = CollectorRegistry()
    metrics = EdgeMetrics.create(registry)
    before = parse_edge_metrics(generate_latest(registry).decode())
    for vendor in ("qr", "plate"):
        metrics.requests.labels(vendor=vendor, outcome="answered").inc(3)
        metrics.latency.labels(vendor=vendor, waited="true").observe(0.02)
    metrics.requests.labels(vendor="qr", outcome="fallback").inc()
    metrics.latency.labels(vendor="qr", waited="false").observe(5.0)  # not a waiting device
    after = parse_edge_metrics(generate_latest(registry).decode())
    assert after.outcomes == {"answered": 6.0, "fallback": 1.0}
    delta = answer_delta(after.answer, before.answer)  # before: no bucket yet
    assert delta["count"] == 2 and delta["buckets"][-1][1] == 2


def test_fleet_register_rows_load_and_each_family_parses_its_scans(tmp_path: Path) -> None:
    sim = build_simulator(communities=2, residents=10, seed=3)
    fleet = build_fleet(sim, devices_for(200.0))
    assert len(fleet) == 200 and {d.kind for d in fleet} == {"qr", "plate", "generic"}
    write_register([d.register_record() for d in fleet], tmp_path / "register.json")
    register = Register.from_file(tmp_path / "register.json", "")
    adapters = {
        "qr": QrReaderAdapter(),
        "plate": PlateCameraAdapter(),
        "generic": GenericJsonAdapter(),
    }
    for device in fleet[:3]:
        body = request_body(vars(device) | {"tokens": list(device.tokens)}, 7, "base")
        path = "/edge/api/v1/scans" if device.kind == "generic" else f"/edge/{device.kind}/"
        parsed = adapters[device.kind].parse(DeviceRequest("POST", path, {}, {}, body, "127.0.0.1"))
        entry = register.find(device.kind, parsed.identity, "127.0.0.1")
        assert entry is not None and entry.device_id == device.number
        assert parsed.delivery == "response" and len(parsed.events) == 1


def test_device_reads_a_keep_alive_response() -> None:
    async def read() -> tuple[int, bytes, bool]:
        reader = asyncio.StreamReader()
        reader.feed_data(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\ncode=0000"
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        first = await read_response(reader)
        assert first == (200, b"code=0000", True)
        return await read_response(reader)

    assert asyncio.run(read()) == (503, b"", False)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *argv])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(
            (),
            {"skip_edge": False, "edge_only": False, "edge_loads": (200.0, 1000.0)},
            id="the edge phase runs by default at 200 and 1,000/s",
        ),
        pytest.param(("--skip-edge",), {"skip_edge": True}, id="skipped"),
        pytest.param(
            ("--edge-only",),
            {"edge_only": True, "skip_server": True, "events": 0},
            id="alone: no ClickHouse server, no events prefilled",
        ),
        pytest.param(
            ("--edge-only", "--events", "5000"), {"events": 5000}, id="alone, events asked for"
        ),
        pytest.param(("--edge-loads", "300,900"), {"edge_loads": (300.0, 900.0)}, id="fixed loads"),
    ],
)
def test_command_line_options(argv: tuple[str, ...], expected: dict[str, Any]) -> None:
    config = config_from_args(_parse(*argv))
    assert {k: getattr(config, k) for k in expected} == expected


def test_command_line_refuses_a_zero_edge_load() -> None:
    with pytest.raises(SystemExit):
        _parse("--edge-loads", "0,1000")


def test_edge_figures_in_the_summary_table() -> None:
    load = _load(
        devices=1000,
        sustainable=True,
        device={"p50_ms": 251.0, "p95_ms": 624.0, "p99_ms": 747.0},
        edge={"p50_ms": 250.0, "p95_ms": 575.0, "p99_ms": 915.0},
        decide={"p50_ms": 80.0, "p95_ms": 209.0, "p99_ms": 315.0},
        edge_cpu_ms_per_request=0.551,
    )
    results = {
        "edge": {
            "loads": [load],
            "highest_sustainable_per_s": 1356,
            "idle_cpu_share": {"edge": 0.07, "decide": 0.01, "broker": 0.31},
        }
    }
    text = summary_table(results)
    assert "gate edge 边缘网关 @ 1000/s (achieved 990)" in text
    assert "251.0 / 624.0 / 747.0" in text and "80.0 / 209.0 / 315.0" in text
    assert "0.551" in text and "1356" in text and "0.07 / 0.01 / 0.31" in text
