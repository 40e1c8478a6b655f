"""Prometheus for the pipeline: the alerting rules pass `promtool check` and their promtool unit
tests (which can fail: a control with a changed threshold does), the compose config is valid,
and Debian's prometheus scrapes a running `fangxian worker` (a process serving the project's
/metrics), loads the rules without evaluation errors, and answers every PromQL query of the
pipeline-health dashboard."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from fangxian.core.settings import Settings, Topics
from fangxian.ingest.produce import RecordProducer
from infra.ports import LOOPBACK, free_port
from infra.prometheus_server import ALERT_RULES, PrometheusServer, find_binary
from tests.integration.pipeline_harness import fresh_example

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
DASHBOARD = ROOT / "infra" / "grafana" / "dashboards" / "pipeline-health.json"
WAIT_S = 120.0


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_promtool_checks_the_alerting_rules() -> None:
    done = promtool("check", "rules", ALERT_RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    done = promtool("test", "rules", "alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("original", "changed"),
    [
        pytest.param(">= 20", ">= 1000", id="silent gate needing 1000 decisions yesterday"),
        pytest.param("> 0.01", "> 0.5", id="dead-letter ratio line at 50 %"),
        pytest.param("for: 2m", "for: 20m", id="worker down only after 20 minutes"),
        pytest.param(
            '{severity="CRITICAL"}) > 900',
            '{severity="CRITICAL"}) > 9000',
            id="CRITICAL unacknowledged only after 2.5 hours",
        ),
    ],
)
def test_control_the_unit_tests_fail_on_a_changed_rule(
    tmp_path: Path, original: str, changed: str
) -> None:
    rules = ALERT_RULES.read_text(encoding="utf-8")
    assert original in rules
    (tmp_path / "alerts.yml").write_text(rules.replace(original, changed, 1), encoding="utf-8")
    shutil.copy(PROMETHEUS_DIR / "alerts.test.yml", tmp_path)
    done = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert done.returncode != 0 and "FAILED" in done.stdout + done.stderr


def test_the_compose_prometheus_config_is_valid() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout


def _worker_env(settings: Settings) -> dict[str, str]:
    """`fangxian worker` configured only by its environment, as an operator starts it."""
    env = dict(os.environ)
    env.update(
        FANGXIAN_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        FANGXIAN_CLICKHOUSE_URL=settings.clickhouse_url,
        FANGXIAN_APP_ID=settings.app_id,
        FANGXIAN_WEB_PORT=str(settings.web_port),
        FANGXIAN_METRICS_PORT=str(settings.metrics_port),
        FANGXIAN_SINK_FLUSH_S="0.3",
        PYTHONPATH=str(ROOT),
    )
    for f in fields(Topics):
        env["FANGXIAN_TOPIC_" + f.name.upper()] = getattr(settings.topics, f.name)
    return env


@pytest.fixture
def scraped_worker(topics: Settings, chdb_url: str, tmp_path: Path) -> Iterator[PrometheusServer]:
    """A running worker that has consumed one gate scan, and Prometheus scraping it."""
    settings = topics.replace(
        clickhouse_url=chdb_url, web_port=free_port(), metrics_port=free_port()
    )
    producer = RecordProducer(settings)
    producer.send("GateScan", fresh_example("GateScan", "resident_qr", health_code="RED"))
    producer.close()
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "fangxian.cli", "worker"],
            env=_worker_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        with PrometheusServer([f"{LOOPBACK}:{settings.metrics_port}"]) as prometheus:
            yield prometheus
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _wait_for(prometheus: PrometheusServer, expr: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + WAIT_S
    while True:
        result = prometheus.query(expr)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(1)


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return [e.replace("$__rate_interval", "1m") for e in exprs]


def test_prometheus_scrapes_a_running_worker(scraped_worker: PrometheusServer) -> None:
    consumed = _wait_for(scraped_worker, 'fangxian_events_in_total{job="fangxian-worker"} >= 1')
    assert consumed, "the worker's events_in counter never reached Prometheus"
    (up,) = scraped_worker.query('up{job="fangxian-worker"}')
    assert up["value"][1] == "1"
    # a rate needs two scrapes of the series: Prometheus keeps scraping the live worker
    assert _wait_for(scraped_worker, "sum by (topic) (rate(fangxian_events_in_total[1m]))")

    groups = scraped_worker.api("rules")["groups"]
    rules = [r for g in groups if g["name"] == "fangxian-pipeline" for r in g["rules"]]
    assert len(rules) == 8
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]

    for expr in _dashboard_exprs():  # every panel's PromQL is valid against the live series
        scraped_worker.query(expr)
