"""Apache Kafka (KRaft, combined broker + controller, one node) as a child process, from the jars
``infra/kafka/fetch.sh`` caches. For tests and local runs: loopback only, replication factor 1,
auto topic creation off so a topic nobody created is an error, not a silent default."""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from infra.ports import LOOPBACK, free_port, port_is_open
from infra.process import Service, ServiceStartError, spawn, terminate, wait_until_ready

log = logging.getLogger(__name__)

FETCH_SCRIPT = Path(__file__).resolve().parent / "kafka" / "fetch.sh"
NODE_ID = 1

# Settings for a single test node on a small machine. Internal topics get few partitions so the
# first consumer group join does not wait for 50 offset partitions.
TEST_BROKER_PROPERTIES: Mapping[str, str] = {
    "auto.create.topics.enable": "false",
    "num.partitions": "1",
    "default.replication.factor": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "num.network.threads": "2",
    "num.io.threads": "4",
    "num.recovery.threads.per.data.dir": "1",
    "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
    "log.cleaner.backoff.ms": "1000",
    "delete.topic.enable": "true",
}

JVM_OPTIONS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
)


def fetch_kafka_lib() -> Path:
    """Run ``infra/kafka/fetch.sh`` (cached after the first run) and return the classpath folder."""
    try:
        result = subprocess.run(
            ["bash", str(FETCH_SCRIPT)], check=True, capture_output=True, text=True
        )
    except subprocess.CalledProcessError as err:
        raise ServiceStartError(
            f"fetching the Kafka jars failed (needs Maven `mvn` and Maven Central access the first "
            f"time): {err.stderr.strip()[-2000:]}"
        ) from err
    lib = Path(result.stdout.strip().splitlines()[-1])
    if not any(lib.glob("kafka_2.13-*.jar")):
        raise ServiceStartError(f"{lib} holds no kafka_2.13 jar; delete it and fetch again")
    return lib


def server_properties(
    *, data_dir: Path, port: int, controller_port: int, overrides: Mapping[str, str]
) -> dict[str, str]:
    """server.properties for one KRaft node acting as broker and controller on loopback."""
    props = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.bootstrap.servers": f"{LOOPBACK}:{controller_port}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir / "kraft-logs"),
        **TEST_BROKER_PROPERTIES,
    }
    props.update(overrides)
    return props


def log4j2_properties(level: str = "INFO") -> str:
    """A log4j2 configuration that writes to stdout (the process log file)."""
    return "\n".join(
        [
            "status = warn",
            "appender.out.type = Console",
            "appender.out.name = STDOUT",
            "appender.out.layout.type = PatternLayout",
            "appender.out.layout.pattern = [%d] %p %m (%c)%n",
            f"rootLogger.level = {level}",
            "rootLogger.appenderRefs = out",
            "rootLogger.appenderRef.out.ref = STDOUT",
            # the request logger and the state change logger are noise in a test log
            "logger.request.name = kafka.request.logger",
            "logger.request.level = WARN",
            "logger.state.name = state.change.logger",
            "logger.state.level = WARN",
            "",
        ]
    )


def new_cluster_id() -> str:
    """A KRaft cluster id as ``StorageTool random-uuid`` makes it (url-safe base64 of 16 random
    bytes, unpadded), without a second JVM start."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")


def render_properties(props: Mapping[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in props.items())


def broker_answers(bootstrap: str) -> bool:
    """True when a kafka-python admin client can connect and list topics.

    Only connection-level failures mean "not ready yet"; anything else (a bad client setting)
    is raised so the wait does not hide it for a minute.
    """
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="fangxian-readiness", request_timeout_ms=3000
        )
    except (KafkaError, OSError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


class KafkaBroker(Service):
    """One Apache Kafka node on free loopback ports, in a temp data dir removed by ``stop()``.

    >>> with KafkaBroker() as broker:
    ...     use(broker.bootstrap)
    """

    def __init__(
        self,
        *,
        lib_dir: Path | None = None,
        heap: str = "512m",
        overrides: Mapping[str, str] | None = None,
        start_timeout_s: float = 60.0,
        log_level: str = "INFO",
    ) -> None:
        self._lib_dir = lib_dir
        self._heap = heap
        self._overrides = dict(overrides or {})
        self._start_timeout_s = start_timeout_s
        self._log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None
        self._data_dir: Path | None = None
        self._java: list[str] = []
        self.port = 0
        self.controller_port = 0
        self.start_seconds = 0.0

    @property
    def bootstrap(self) -> str:
        if self._proc is None:
            raise RuntimeError("KafkaBroker is not started")
        return f"{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        if self._data_dir is None:
            raise RuntimeError("KafkaBroker is not started")
        return self._data_dir / "kafka.log"

    def start(self) -> KafkaBroker:
        if self._proc is not None:
            raise RuntimeError("KafkaBroker is already started")
        began = time.monotonic()
        lib = self._lib_dir or fetch_kafka_lib()
        classpath = str(lib / "*")
        self._data_dir = Path(tempfile.mkdtemp(prefix="fangxian-kafka-"))
        try:
            self._proc = self._launch(classpath, self._data_dir)
            wait_until_ready(
                lambda: port_is_open(self.port) and broker_answers(f"{LOOPBACK}:{self.port}"),
                proc=self._proc,
                what="Kafka broker",
                log_path=self.log_path,
                timeout_s=self._start_timeout_s,
                interval_s=0.25,
            )
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        log.info("Kafka broker ready on %s in %.1f s", self.bootstrap, self.start_seconds)
        return self

    def _launch(self, classpath: str, data_dir: Path) -> subprocess.Popen[bytes]:
        self.port, self.controller_port = free_port(), free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        props_path = data_dir / "server.properties"
        props = server_properties(
            data_dir=data_dir,
            port=self.port,
            controller_port=self.controller_port,
            overrides=self._overrides,
        )
        props_path.write_text(render_properties(props), encoding="utf-8")
        log4j_path = data_dir / "log4j2.properties"
        log4j_path.write_text(log4j2_properties(self._log_level), encoding="utf-8")
        java = [
            "java",
            f"-Xmx{self._heap}",
            f"-Xms{self._heap}",
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={log4j_path}",
            "-cp",
            classpath,
        ]
        self._storage_tool(
            java,
            ["format", f"--cluster-id={new_cluster_id()}", "-c", str(props_path), "--standalone"],
            data_dir,
        )
        self._java = java
        return self._spawn(data_dir)

    def _spawn(self, data_dir: Path) -> subprocess.Popen[bytes]:
        log.debug("starting Kafka broker on %s:%d", LOOPBACK, self.port)
        return spawn(
            [*self._java, "kafka.Kafka", str(data_dir / "server.properties")],
            log_path=data_dir / "kafka.log",
            cwd=data_dir,
        )

    def restart(self, down_s: float = 0.0, *, hard: bool = False) -> None:
        """Stop the broker (SIGTERM, or SIGKILL if ``hard``) and start it again on the same
        data and the same ports, as an operator's restart or a crashed node coming back."""
        if self._proc is None or self._data_dir is None:
            raise RuntimeError("KafkaBroker is not started")
        if hard:
            self._proc.kill()
            self._proc.wait()
        else:
            terminate(self._proc, what="Kafka broker")
        time.sleep(down_s)
        self._proc = self._spawn(self._data_dir)
        wait_until_ready(
            lambda: port_is_open(self.port) and broker_answers(f"{LOOPBACK}:{self.port}"),
            proc=self._proc,
            what="Kafka broker (restart)",
            log_path=self.log_path,
            timeout_s=self._start_timeout_s,
            interval_s=0.25,
        )
        log.info("Kafka broker on %s restarted on the same data", self.bootstrap)

    def _storage_tool(self, java: list[str], args: list[str], data_dir: Path) -> str:
        argv = [*java, "kafka.tools.StorageTool", *args]
        result = subprocess.run(argv, capture_output=True, text=True, cwd=data_dir, check=False)
        if result.returncode != 0:
            raise ServiceStartError(
                f"kafka StorageTool {args[0]} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )
        return result.stdout

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and delete its data dir. Safe to call twice."""
        if self._proc is not None:
            code = terminate(self._proc, what="Kafka broker")
            log.info("Kafka broker on port %d stopped (exit %s)", self.port, code)
            self._proc = None
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
