"""Debian's ``prometheus`` as a child process for tests: the repo's alerting rules, static scrape
targets on loopback, a temp data dir, a free port. ``query`` asks its HTTP API."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from infra.ports import LOOPBACK, free_port
from infra.process import Service, ServiceStartError, spawn, terminate, wait_until_ready

log = logging.getLogger(__name__)

ALERT_RULES = Path(__file__).resolve().parent / "prometheus" / "alerts.yml"
INSTALL_HINT = "install it with `apt-get install prometheus` (Debian/Ubuntu)"


def find_binary(name: str) -> str:
    """``prometheus`` or ``promtool`` on PATH, else a clear error."""
    found = shutil.which(name)
    if found is None:
        raise ServiceStartError(f"no {name} binary found; {INSTALL_HINT}")
    return found


def scrape_config(*, job: str, targets: list[str], interval_s: float) -> str:
    """A Prometheus config: one static job, the repo's alert rules, fast evaluation for tests."""
    config = {
        "global": {
            "scrape_interval": f"{interval_s:g}s",
            "evaluation_interval": f"{interval_s:g}s",
        },
        "rule_files": [str(ALERT_RULES)],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
    }
    return json.dumps(config)  # YAML is a superset of JSON


class PrometheusServer(Service):
    """Prometheus scraping ``targets`` (``host:port``) as job ``job`` every ``interval_s``."""

    def __init__(
        self,
        targets: list[str],
        *,
        job: str = "fangxian-worker",
        interval_s: float = 1.0,
        start_timeout_s: float = 60.0,
    ) -> None:
        self._targets = targets
        self._job = job
        self._interval_s = interval_s
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self.port = 0
        self.start_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        if self._dir is None:
            raise RuntimeError("PrometheusServer is not started")
        return self._dir / "prometheus.log"

    def start(self) -> PrometheusServer:
        if self._proc is not None:
            raise RuntimeError("PrometheusServer is already started")
        began = time.monotonic()
        binary = find_binary("prometheus")
        self._dir = Path(tempfile.mkdtemp(prefix="fangxian-prometheus-"))
        config = self._dir / "prometheus.yml"
        config.write_text(
            scrape_config(job=self._job, targets=self._targets, interval_s=self._interval_s),
            encoding="utf-8",
        )
        self.port = free_port()
        try:
            self._proc = spawn(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self._dir / 'data'}",
                    f"--web.listen-address={LOOPBACK}:{self.port}",
                    "--log.level=warn",
                ],
                log_path=self.log_path,
                cwd=self._dir,
            )
            wait_until_ready(
                self._ready,
                proc=self._proc,
                what="Prometheus",
                log_path=self.log_path,
                timeout_s=self._start_timeout_s,
            )
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        log.info("Prometheus ready on %s in %.2f s", self.url, self.start_seconds)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``; the ``data`` of a success, else RuntimeError with the error."""
        query = urllib.parse.urlencode(params)
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            body = json.loads(err.read() or b"{}")
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} {params}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        data = self.api("query", query=expr)
        return list(data["result"])

    def stop(self) -> None:
        """Stop Prometheus and delete its data. Safe to call twice."""
        if self._proc is not None:
            terminate(self._proc, what="Prometheus")
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
