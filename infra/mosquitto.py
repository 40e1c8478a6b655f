"""Debian's ``mosquitto`` MQTT broker as a child process for tests: a config file written for the
run, one listener on a free loopback port, optionally a password file and an ACL file (the way
a deployment confines each gateway to its own topics)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from infra.ports import LOOPBACK, free_port, port_is_open
from infra.process import Service, ServiceStartError, spawn, terminate, wait_until_ready

log = logging.getLogger(__name__)

INSTALL_HINT = "install it with `apt-get install mosquitto` (Debian/Ubuntu)"


def find_mosquitto(name: str = "mosquitto") -> str:
    """``mosquitto`` (Debian installs it in /usr/sbin) or ``mosquitto_passwd``, else an error."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise ServiceStartError(f"no {name} binary found; {INSTALL_HINT}")
    return found


class MosquittoBroker(Service):
    """mosquitto on ``127.0.0.1:<free port>``. Without ``users`` anyone may connect; with them,
    only those users (password file), and ``acl`` (mosquitto ACL file text) applies."""

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        start_timeout_s: float = 20.0,
    ) -> None:
        self._users = dict(users or {})
        self._acl = acl
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self.host = LOOPBACK
        self.port = 0
        self.start_seconds = 0.0

    @property
    def log_path(self) -> Path:
        if self._dir is None:
            raise RuntimeError("MosquittoBroker is not started")
        return self._dir / "mosquitto.log"

    def start(self) -> MosquittoBroker:
        if self._proc is not None:
            raise RuntimeError("MosquittoBroker is already started")
        began = time.monotonic()
        binary = find_mosquitto()
        self._dir = Path(tempfile.mkdtemp(prefix="fangxian-mosquitto-"))
        self.port = free_port()
        lines = [
            f"listener {self.port} {LOOPBACK}",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            # started as root, mosquitto switches to the "mosquitto" user, which cannot read
            # this run's private directory: stay the user that started it
            lines.append("user root")
        if self._users:
            passwd = self._dir / "passwd"
            passwd.touch(mode=0o600)
            tool = find_mosquitto("mosquitto_passwd")
            for user, password in self._users.items():
                subprocess.run(
                    [tool, "-b", str(passwd), user, password],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if self._acl is not None:
            acl = self._dir / "acl"
            acl.write_text(self._acl, encoding="utf-8")
            acl.chmod(0o600)
            lines.append(f"acl_file {acl}")
        config = self._dir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            self._proc = spawn([binary, "-c", str(config)], log_path=self.log_path, cwd=self._dir)
            wait_until_ready(
                lambda: port_is_open(self.port),
                proc=self._proc,
                what="mosquitto",
                log_path=self.log_path,
                timeout_s=self._start_timeout_s,
            )
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        log.info("mosquitto ready on %s:%d in %.2f s", self.host, self.port, self.start_seconds)
        return self

    def stop(self) -> None:
        """Stop the broker and delete its files. Safe to call twice."""
        if self._proc is not None:
            terminate(self._proc, what="mosquitto")
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
