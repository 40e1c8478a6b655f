"""Apache Kafka (KRaft, combined broker + controller, one node) as a child process, from the jars
``infra/kafka/fetch.sh`` caches. For tests and local runs: loopback only, replication factor 1,
auto topic creation off so a topic nobody created is an error, not a silent default.

Two modes:

- plaintext (the default, what most tests use): one PLAINTEXT listener on 127.0.0.1, no
  authentication, no authorizer;
- secure (``KafkaBroker(security=KafkaSecurity(users={...}))``): a SASL_PLAINTEXT listener with
  SCRAM-SHA-512 (credentials written into the metadata log at format time), optionally a
  SASL_SSL listener whose certificate comes from a CA made at run time (``infra.tls``), KRaft's
  ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false`` and one super user for
  admin work (topics, ACLs). The controller listener uses SASL/PLAIN with the super user's
  credentials from its JAAS line (SCRAM credentials live in the metadata the controller serves,
  so they cannot authenticate the controller itself), so no anonymous principal is ever needed.
"""

from __future__ import annotations

import base64
import logging
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from fangxian.core.settings import Settings
from infra.ports import LOOPBACK, free_port, port_is_open
from infra.process import Service, ServiceStartError, spawn, terminate, wait_until_ready

if TYPE_CHECKING:
    from infra.tls import CertificateFiles

log = logging.getLogger(__name__)

FETCH_SCRIPT = Path(__file__).resolve().parent / "kafka" / "fetch.sh"
NODE_ID = 1
SCRAM = "SCRAM-SHA-512"
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"

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


@dataclass(frozen=True)
class KafkaSecurity:
    """What a secure broker is started with.

    ``users``: SCRAM-SHA-512 user name → password, created at format time (the super user is
    added with a random password when it is not listed). ``tls``: also open a SASL_SSL listener
    with a certificate from a CA made for this broker.
    """

    users: Mapping[str, str] = field(default_factory=dict)
    super_user: str = "admin"
    tls: bool = False

    def with_super_user(self) -> KafkaSecurity:
        if self.super_user in self.users:
            return self
        return KafkaSecurity(
            users={**self.users, self.super_user: secrets.token_hex(16)},
            super_user=self.super_user,
            tls=self.tls,
        )


def _jaas(module: str, username: str, password: str, extra: str = "") -> str:
    return (
        f"org.apache.kafka.common.security.{module} required "
        f'username="{username}" password="{password}"{extra};'
    )


def security_properties(
    security: KafkaSecurity, *, port: int, tls_port: int, certificates: CertificateFiles | None
) -> dict[str, str]:
    """The listener, SASL and authorizer properties of a secure node (see the module doc)."""
    admin, password = security.super_user, security.users[security.super_user]
    scram_login = _jaas("scram.ScramLoginModule", admin, password)
    listeners = [f"SASL_PLAINTEXT://{LOOPBACK}:{port}"]
    protocol_map = ["CONTROLLER:SASL_PLAINTEXT", "SASL_PLAINTEXT:SASL_PLAINTEXT"]
    props = {
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": SCRAM,
        "sasl.mechanism.inter.broker.protocol": SCRAM,
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": SCRAM,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": scram_login,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            "plain.PlainLoginModule", admin, password, f' user_{admin}="{password}"'
        ),
        "authorizer.class.name": STANDARD_AUTHORIZER,
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{admin}",
    }
    if security.tls:
        if certificates is None:
            raise ValueError("a TLS listener needs certificates")
        listeners.append(f"SASL_SSL://{LOOPBACK}:{tls_port}")
        protocol_map.append("SASL_SSL:SASL_SSL")
        props.update(
            {
                "listener.name.sasl_ssl.sasl.enabled.mechanisms": SCRAM,
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram_login,
                "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
                "listener.name.sasl_ssl.ssl.keystore.location": str(certificates.server_pem),
                "ssl.client.auth": "none",
            }
        )
    props["listeners"] = ",".join(listeners)
    props["advertised.listeners"] = ",".join(listeners)
    props["listener.security.protocol.map"] = ",".join(protocol_map)
    return props


def server_properties(
    *,
    data_dir: Path,
    port: int,
    controller_port: int,
    overrides: Mapping[str, str],
    security: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """server.properties for one KRaft node acting as broker and controller on loopback.

    ``security`` (from ``security_properties``) replaces the PLAINTEXT listener by SASL ones.
    """
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
    if security:
        props.update(security)
        props["listeners"] += f",CONTROLLER://{LOOPBACK}:{controller_port}"
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


def broker_answers(bootstrap: str, **client: Any) -> bool:
    """True when a kafka-python admin client can connect and list topics.

    ``client``: extra client options (security). Only connection-level failures mean "not
    ready yet"; anything else (a bad client setting) is raised so the wait does not hide it
    for a minute.
    """
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="fangxian-readiness",
            request_timeout_ms=3000,
            **client,
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

    With ``security``, ``bootstrap`` is the SASL_PLAINTEXT listener, ``tls_bootstrap`` the
    SASL_SSL one (``ca_file`` is the CA to trust), and ``settings_for(user)`` gives a
    ``Settings`` that connects as that user.
    """

    def __init__(
        self,
        *,
        lib_dir: Path | None = None,
        heap: str = "512m",
        overrides: Mapping[str, str] | None = None,
        start_timeout_s: float = 60.0,
        log_level: str = "INFO",
        security: KafkaSecurity | None = None,
    ) -> None:
        self.security = security.with_super_user() if security is not None else None
        self._certificates: CertificateFiles | None = None
        self.tls_port = 0
        self._lib_dir = lib_dir
        self._heap = heap
        self._overrides = dict(overrides or {})
        self._start_timeout_s = start_timeout_s
        self._log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None
        self._data_dir: Path | None = None
        self.port = 0
        self.controller_port = 0
        self.start_seconds = 0.0

    @property
    def bootstrap(self) -> str:
        if self._proc is None:
            raise RuntimeError("KafkaBroker is not started")
        return f"{LOOPBACK}:{self.port}"

    @property
    def tls_bootstrap(self) -> str:
        if self._proc is None or not self.tls_port:
            raise RuntimeError("KafkaBroker is not started with a TLS listener")
        return f"{LOOPBACK}:{self.tls_port}"

    @property
    def ca_file(self) -> Path:
        if self._certificates is None:
            raise RuntimeError("KafkaBroker is not started with a TLS listener")
        return self._certificates.ca_file

    @property
    def log_path(self) -> Path:
        if self._data_dir is None:
            raise RuntimeError("KafkaBroker is not started")
        return self._data_dir / "kafka.log"

    def settings_for(
        self, user: str, base: Settings | None = None, *, tls: bool = False
    ) -> Settings:
        """``base`` (default ``Settings()``) connecting to this broker as ``user``.

        A plaintext broker ignores ``user`` and gives PLAINTEXT settings.
        """
        base = base or Settings()
        if self.security is None:
            return base.replace(kafka_bootstrap=self.bootstrap)
        if tls:
            return base.replace(
                kafka_bootstrap=self.tls_bootstrap,
                kafka_security_protocol="SASL_SSL",
                kafka_sasl_mechanism=SCRAM,
                kafka_username=user,
                kafka_password=self.security.users[user],
                kafka_ssl_cafile=str(self.ca_file),
            )
        return base.replace(
            kafka_bootstrap=self.bootstrap,
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism=SCRAM,
            kafka_username=user,
            kafka_password=self.security.users[user],
        )

    def admin_kwargs(self) -> dict[str, Any]:
        """kafka-python options connecting as the super user ({} on a plaintext broker)."""
        if self.security is None:
            return {}
        from fangxian.core.kafka_security import kafka_client_kwargs

        return kafka_client_kwargs(self.settings_for(self.security.super_user))

    def start(self) -> KafkaBroker:
        if self._proc is not None:
            raise RuntimeError("KafkaBroker is already started")
        began = time.monotonic()
        lib = self._lib_dir or fetch_kafka_lib()
        classpath = str(lib / "*")
        self._data_dir = Path(tempfile.mkdtemp(prefix="fangxian-kafka-"))
        try:
            self._proc = self._launch(classpath, self._data_dir)
            admin = self.admin_kwargs()
            wait_until_ready(
                lambda: (
                    port_is_open(self.port) and broker_answers(f"{LOOPBACK}:{self.port}", **admin)
                ),
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
        log.info(
            "Kafka broker ready on %s (%s) in %.1f s",
            self.bootstrap,
            "SASL/SCRAM, ACLs" if self.security else "PLAINTEXT, no authentication",
            self.start_seconds,
        )
        return self

    def _launch(self, classpath: str, data_dir: Path) -> subprocess.Popen[bytes]:
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_port())
        self.port, self.controller_port, tls_port = sorted(ports)
        props_path = data_dir / "server.properties"
        security_props = None
        format_args: list[str] = []
        if self.security is not None:
            if self.security.tls:
                from infra.tls import make_test_certificates  # cryptography: a dev dependency

                self.tls_port = tls_port
                self._certificates = make_test_certificates(data_dir / "tls")
            security_props = security_properties(
                self.security,
                port=self.port,
                tls_port=self.tls_port,
                certificates=self._certificates,
            )
            for user, password in sorted(self.security.users.items()):
                format_args.append(f"--add-scram={SCRAM}=[name={user},password={password}]")
        props = server_properties(
            data_dir=data_dir,
            port=self.port,
            controller_port=self.controller_port,
            overrides=self._overrides,
            security=security_props,
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
            [
                "format",
                f"--cluster-id={new_cluster_id()}",
                "-c",
                str(props_path),
                "--standalone",
                *format_args,
            ],
            data_dir,
        )
        log.debug("starting Kafka broker on %s:%d", LOOPBACK, self.port)
        return spawn(
            [*java, "kafka.Kafka", str(props_path)], log_path=data_dir / "kafka.log", cwd=data_dir
        )

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
            self._certificates = None
