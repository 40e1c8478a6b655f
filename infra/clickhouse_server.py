"""The Debian ``clickhouse-server`` (18.16) as a child process for tests: a small config in a temp
dir, loopback only, a passwordless ``default`` user and the least-privilege users of production
as far as 18.16 can express them (it has no SQL access control: users.xml profiles and
``allow_databases`` are all there is):

- ``bi_reader``: profile ``readonly=1`` — no INSERT, ALTER, DROP, CREATE or SET;
- ``fangxian_sink``: ``allow_ddl=0`` (no CREATE, ALTER — including ``ALTER … DELETE`` — DROP,
  TRUNCATE, OPTIMIZE, and ``SET allow_ddl`` is refused too) and ``allow_databases`` = the app
  database only. 18.16 cannot separate INSERT from SELECT, so it can read back the app
  database; the production users.d file (ClickHouse 25.8) grants INSERT and SHOW COLUMNS only;
- ``fangxian_migrate``: DDL, in the app database only;
- ``fangxian_staff`` (contacts, report, forget): ``allow_ddl=0`` and ``allow_databases`` = the
  app database, like the sink. 18.16 counts ``ALTER … DELETE`` as DDL, so ``forget`` is refused
  to it there, and it cannot tell the audit log from the event tables (the production users.d
  file, ClickHouse 25.8, grants SELECT, INSERT into audit_log and the roll-ups, and ALTER
  DELETE on the personal-data tables only).

The two fangxian users have random passwords per server (``passwords``)."""

from __future__ import annotations

import hashlib
import logging
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

from clickhouse_driver import Client
from clickhouse_driver.errors import Error as ClickHouseError

from infra.ports import LOOPBACK, free_port, port_is_open
from infra.process import Service, ServiceStartError, spawn, terminate, wait_until_ready

log = logging.getLogger(__name__)

BI_READER = "bi_reader"
SINK_USER = "fangxian_sink"
MIGRATE_USER = "fangxian_migrate"
STAFF_USER = "fangxian_staff"
APP_DATABASE = "fangxian"
# Debian keeps server binaries in /usr/sbin, which is not on a normal user's PATH
_DEBIAN_SBIN = Path("/usr/sbin/clickhouse-server")
INSTALL_HINT = "install it with `apt-get install clickhouse-server` (Debian/Ubuntu)"


def find_clickhouse_server() -> list[str]:
    """The command starting a ClickHouse server: ``clickhouse-server`` or ``clickhouse server``."""
    found = shutil.which("clickhouse-server")
    if found:
        return [found]
    if _DEBIAN_SBIN.is_file():
        return [str(_DEBIAN_SBIN)]
    multi = shutil.which("clickhouse")
    if multi:
        return [multi, "server"]
    raise ServiceStartError(f"no clickhouse-server binary found; {INSTALL_HINT}")


def config_xml(
    *, data_dir: Path, tcp_port: int, http_port: int, log_level: str, extra: str = ""
) -> str:
    """Server config for 18.16: loopback only, every path inside ``data_dir``, small caches.
    ``extra``: more top-level elements (a cluster node's ZooKeeper, macros, remote_servers)."""
    root = escape(str(data_dir))
    return f"""<?xml version="1.0"?>
<yandex>
  <logger><level>{escape(log_level)}</level><console>1</console></logger>
  <listen_host>{LOOPBACK}</listen_host>
  <tcp_port>{tcp_port}</tcp_port>
  <http_port>{http_port}</http_port>
  <path>{root}/data/</path>
  <tmp_path>{root}/tmp/</tmp_path>
  <user_files_path>{root}/user_files/</user_files_path>
  <format_schema_path>{root}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
{extra}</yandex>
"""


def users_xml(passwords: dict[str, str] | None = None, app_database: str = APP_DATABASE) -> str:
    """Users for tests: ``default`` (no password, loopback), ``bi_reader`` (readonly=1), and the
    sink and migration users (see the module doc) with ``passwords`` (user → password)."""
    passwords = passwords or {}
    only_app = f"<allow_databases><database>{escape(app_database)}</database></allow_databases>"

    def user(name: str, profile: str, extra: str = "") -> str:
        if name in passwords:
            digest = hashlib.sha256(passwords[name].encode()).hexdigest()
            password = f"<password_sha256_hex>{digest}</password_sha256_hex>"
        else:
            password = "<password></password>"
        return (
            f"    <{name}>{password}"
            f"<networks><ip>{LOOPBACK}</ip></networks>"
            f"<profile>{profile}</profile><quota>default</quota>{extra}</{name}>\n"
        )

    users = user("default", "default") + user(BI_READER, "readonly")
    if SINK_USER in passwords:
        users += user(SINK_USER, "sink", only_app)
    if MIGRATE_USER in passwords:
        users += user(MIGRATE_USER, "default", only_app)
    if STAFF_USER in passwords:
        users += user(STAFF_USER, "staff", only_app)
    return (
        '<?xml version="1.0"?>\n<yandex>\n'
        "  <profiles>\n"
        "    <default><max_memory_usage>2000000000</max_memory_usage></default>\n"
        "    <readonly><readonly>1</readonly></readonly>\n"
        "    <sink><max_memory_usage>2000000000</max_memory_usage><allow_ddl>0</allow_ddl></sink>\n"
        "    <staff><max_memory_usage>2000000000</max_memory_usage><allow_ddl>0</allow_ddl>"
        "<max_execution_time>300</max_execution_time></staff>\n"
        "  </profiles>\n"
        "  <users>\n" + users + "  </users>\n"
        "  <quotas><default><interval><duration>3600</duration><queries>0</queries>"
        "<errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows>"
        "<execution_time>0</execution_time></interval></default></quotas>\n"
        "</yandex>\n"
    )


class ClickHouseServer(Service):
    """A ClickHouse server on free loopback ports in a temp dir removed by ``stop()``."""

    def __init__(
        self,
        *,
        command: list[str] | None = None,
        start_timeout_s: float = 30.0,
        log_level: str = "warning",
    ) -> None:
        self._command = command
        self._start_timeout_s = start_timeout_s
        self._log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None
        self._data_dir: Path | None = None
        self.tcp_port = 0
        self.http_port = 0
        self.version = ""
        self.start_seconds = 0.0
        self.app_database = APP_DATABASE
        self.passwords = {
            SINK_USER: secrets.token_hex(16),
            MIGRATE_USER: secrets.token_hex(16),
            STAFF_USER: secrets.token_hex(16),
        }

    @property
    def url(self) -> str:
        """``clickhouse://default@127.0.0.1:PORT/default`` — the form ``Settings.clickhouse_url``
        takes."""
        return self.url_for("default")

    def url_for(self, database: str, user: str = "default") -> str:
        if self._proc is None:
            raise RuntimeError("ClickHouseServer is not started")
        password = self.passwords.get(user)
        login = f"{user}:{password}" if password else user
        return f"clickhouse://{login}@{LOOPBACK}:{self.tcp_port}/{database}"

    def client(
        self, user: str = "default", database: str = "default", password: str | None = None
    ) -> Client:
        """A clickhouse-driver client for this server (the caller disconnects it); the password
        of the fangxian users is filled in unless given."""
        if password is None:
            password = self.passwords.get(user, "")
        return Client(
            LOOPBACK,
            port=self.tcp_port,
            user=user,
            password=password,
            database=database,
            connect_timeout=2,
        )

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (its CPU time is in ``/proc/<pid>/stat``)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        if self._data_dir is None:
            raise RuntimeError("ClickHouseServer is not started")
        return self._data_dir / "clickhouse-server.log"

    def start(self) -> ClickHouseServer:
        if self._proc is not None:
            raise RuntimeError("ClickHouseServer is already started")
        began = time.monotonic()
        command = self._command or find_clickhouse_server()
        self._data_dir = Path(tempfile.mkdtemp(prefix="fangxian-clickhouse-"))
        try:
            self._proc = self._launch(command, self._data_dir)
            wait_until_ready(
                self._answers,
                proc=self._proc,
                what="ClickHouse server",
                log_path=self.log_path,
                timeout_s=self._start_timeout_s,
            )
            self.version = self._query_version()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        log.info(
            "ClickHouse server %s ready on %s:%d in %.2f s",
            self.version,
            LOOPBACK,
            self.tcp_port,
            self.start_seconds,
        )
        return self

    def halt(self) -> None:
        """Stop the server process but keep its data and ports (an outage; see ``resume``)."""
        if self._proc is None:
            raise RuntimeError("ClickHouseServer is not running")
        terminate(self._proc, what="ClickHouse server")
        self._proc = None
        log.info("ClickHouse server on port %d halted (data kept)", self.tcp_port)

    def resume(self) -> None:
        """Start the halted server again on the same ports over the same data."""
        if self._proc is not None or self._data_dir is None:
            raise RuntimeError("ClickHouseServer is not halted")
        command = self._command or find_clickhouse_server()
        self._proc = self._launch(command, self._data_dir, keep_ports=True)
        wait_until_ready(
            self._answers,
            proc=self._proc,
            what="ClickHouse server",
            log_path=self.log_path,
            timeout_s=self._start_timeout_s,
        )

    def _launch(
        self, command: list[str], data_dir: Path, *, keep_ports: bool = False
    ) -> subprocess.Popen[bytes]:
        if not keep_ports:
            self.tcp_port, self.http_port = free_port(), free_port()
            while self.http_port == self.tcp_port:
                self.http_port = free_port()
        config = data_dir / "config.xml"
        config.write_text(
            config_xml(
                data_dir=data_dir,
                tcp_port=self.tcp_port,
                http_port=self.http_port,
                log_level=self._log_level,
            ),
            encoding="utf-8",
        )
        (data_dir / "users.xml").write_text(
            users_xml(self.passwords, self.app_database), encoding="utf-8"
        )
        return spawn([*command, f"--config-file={config}"], log_path=self.log_path, cwd=data_dir)

    def _answers(self) -> bool:
        if not port_is_open(self.tcp_port):  # the driver logs a traceback per refused connect
            return False
        client = self.client()
        try:
            return bool(client.execute("SELECT 1") == [(1,)])
        except (ClickHouseError, OSError, EOFError):
            return False
        finally:
            client.disconnect()

    def _query_version(self) -> str:
        client = self.client()
        try:
            rows = client.execute("SELECT version()")
        finally:
            client.disconnect()
        return str(rows[0][0])

    def stop(self) -> None:
        """Stop the server and delete its data dir. Safe to call twice."""
        if self._proc is not None:
            code = terminate(self._proc, what="ClickHouse server")
            log.info("ClickHouse server on port %d stopped (exit %s)", self.tcp_port, code)
            self._proc = None
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
