"""Apache ZooKeeper (standalone) as a child process, from the jars ``infra/zookeeper/fetch.sh``
caches from Maven Central: the coordination service of the test ClickHouse cluster
(``infra/clickhouse_cluster.py``) — replicated tables keep their parts' log and the insert
deduplication ids in it, and ``ON CLUSTER`` DDL its task queue. Debian's ClickHouse 18.16
predates ClickHouse Keeper (21.8+; docker-compose's cluster profile uses Keeper).

Loopback only, a free port, a temp data dir removed by ``stop()``; one node (a production
ensemble has three or five, docs/scale.md).
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from infra.ports import LOOPBACK, free_port
from infra.process import Service, ServiceStartError, spawn, terminate, wait_until_ready

log = logging.getLogger(__name__)

FETCH_SCRIPT = Path(__file__).resolve().parent / "zookeeper" / "fetch.sh"
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"


def fetch_zookeeper_lib() -> Path:
    """Run ``infra/zookeeper/fetch.sh`` (cached after the first run); the classpath folder."""
    try:
        result = subprocess.run(
            ["bash", str(FETCH_SCRIPT)], check=True, capture_output=True, text=True
        )
    except subprocess.CalledProcessError as err:
        raise ServiceStartError(
            "fetching the ZooKeeper jars failed (needs Maven `mvn` and Maven Central access the "
            f"first time): {err.stderr.strip()[-2000:]}"
        ) from err
    lib = Path(result.stdout.strip().splitlines()[-1])
    if not any(lib.glob("zookeeper-3*.jar")):
        raise ServiceStartError(f"{lib} holds no zookeeper jar; delete it and fetch again")
    return lib


def zoo_cfg(*, data_dir: Path, port: int) -> str:
    """A standalone server on loopback. A short tick keeps session expiry (ClickHouse's
    ``session_timeout_ms`` is clamped to 2–20 ticks) and start-up quick."""
    return "\n".join(
        [
            "tickTime=500",
            "initLimit=10",
            "syncLimit=5",
            f"dataDir={data_dir / 'data'}",
            f"clientPort={port}",
            f"clientPortAddress={LOOPBACK}",
            "maxClientCnxns=0",
            "admin.enableServer=false",
            "4lw.commands.whitelist=ruok,srvr,mntr",
            "autopurge.purgeInterval=1",
            "",
        ]
    )


def four_letter(port: int, command: str, timeout_s: float = 1.0) -> str:
    """A ZooKeeper four-letter command's answer ('' when nothing answers)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout_s) as sock:
            sock.sendall(command.encode("ascii"))
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode("utf-8", "replace")
    except OSError:
        return ""


class ZooKeeperServer(Service):
    """One ZooKeeper node on a free loopback port, in a temp dir removed by ``stop()``."""

    def __init__(
        self, *, lib_dir: Path | None = None, heap: str = "256m", start_timeout_s: float = 30.0
    ) -> None:
        self._lib_dir = lib_dir
        self._heap = heap
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._data_dir: Path | None = None
        self.port = 0
        self.start_seconds = 0.0

    @property
    def address(self) -> tuple[str, int]:
        if self._proc is None:
            raise RuntimeError("ZooKeeperServer is not started")
        return LOOPBACK, self.port

    @property
    def log_path(self) -> Path:
        if self._data_dir is None:
            raise RuntimeError("ZooKeeperServer is not started")
        return self._data_dir / "zookeeper.log"

    def start(self) -> ZooKeeperServer:
        if self._proc is not None:
            raise RuntimeError("ZooKeeperServer is already started")
        began = time.monotonic()
        lib = self._lib_dir or fetch_zookeeper_lib()
        self._data_dir = Path(tempfile.mkdtemp(prefix="fangxian-zookeeper-"))
        try:
            self.port = free_port()
            config = self._data_dir / "zoo.cfg"
            config.write_text(zoo_cfg(data_dir=self._data_dir, port=self.port), encoding="utf-8")
            self._proc = spawn(
                [
                    "java",
                    f"-Xmx{self._heap}",
                    "-XX:+UseSerialGC",
                    "-Djava.awt.headless=true",
                    "-Dzookeeper.jmx.log4j.disable=true",
                    "-cp",
                    str(lib / "*"),
                    MAIN_CLASS,
                    str(config),
                ],
                log_path=self.log_path,
                cwd=self._data_dir,
            )
            wait_until_ready(
                lambda: (
                    four_letter(self.port, "ruok") == "imok"
                    and "Mode: standalone" in four_letter(self.port, "srvr")
                ),
                proc=self._proc,
                what="ZooKeeper",
                log_path=self.log_path,
                timeout_s=self._start_timeout_s,
                interval_s=0.2,
            )
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        log.info("ZooKeeper ready on %s:%d in %.1f s", LOOPBACK, self.port, self.start_seconds)
        return self

    def stop(self) -> None:
        """Stop the server and delete its data dir. Safe to call twice."""
        if self._proc is not None:
            terminate(self._proc, what="ZooKeeper")
            self._proc = None
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
