"""A fake ZKTeco terminal speaking PUSH/ADMS, the client side (docs/edge.md, "ZKTeco").

:meth:`FakeZkTerminal.handshake` asks ``GET /iclock/cdata?SN=…&options=all`` and takes the
options it is given (``Delay``, ``Realtime``, ``TimeZone``, ``TimeoutSec``…); punches are stored
with the terminal's local time and :meth:`~FakeZkTerminal.upload` posts them as a
tab-separated ``ATTLOG`` batch (or ``rtlog`` key=value lines), keeping the batch unless the
answer is a 200 whose plain-text body starts with ``OK`` — a JSON answer counts as a failure,
as on the devices; :meth:`~FakeZkTerminal.poll` asks ``/iclock/getrequest`` and reports each
``C:<id>:<cmd>`` command's result on ``/iclock/devicecmd``. Written from the protocol, not
from the adapter. Used by the tests; nothing here is imported by the edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import aiohttp


@dataclass
class ZkAnswer:
    status: int
    text: str


@dataclass
class FakeZkTerminal:
    base_url: str
    sn: str
    pushver: str = "2.4.1"
    table: str = "ATTLOG"  # or "rtlog" (access-control firmware)
    timeout_s: float = 5.0
    options: dict[str, str] = field(default_factory=dict)
    stored: list[str] = field(default_factory=list)
    stamp: int = 0
    answers: list[ZkAnswer] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    _index: int = 0

    async def _request(
        self, method: str, path: str, params: dict[str, str], body: bytes = b""
    ) -> ZkAnswer:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        url = self.base_url.rstrip("/") + path
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                # the firmware sends no Content-Type on its uploads
                session.request(
                    method,
                    url,
                    params=params,
                    data=body or None,
                    skip_auto_headers=("Content-Type",),
                ) as resp,
            ):
                answer = ZkAnswer(resp.status, (await resp.read()).decode("utf-8", "replace"))
        except (aiohttp.ClientError, TimeoutError):
            answer = ZkAnswer(0, "")
        self.answers.append(answer)
        return answer

    async def handshake(self) -> bool:
        params = {"SN": self.sn, "options": "all", "pushver": self.pushver, "language": "83"}
        answer = await self._request("GET", "/iclock/cdata", params)
        lines = answer.text.replace("\r\n", "\n").split("\n")
        if answer.status != 200 or lines[0].strip() != f"GET OPTION FROM: {self.sn}":
            return False
        self.options = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
        return True

    def punch(
        self,
        pin: str,
        local_time: datetime,
        *,
        status: int = 0,
        verify: int = 15,
        card: str = "0",
        temperature_c: float | None = None,
        door: int = 1,
    ) -> None:
        """One verification, stored as the configured table's record."""
        when = local_time.strftime("%Y-%m-%d %H:%M:%S")
        if self.table == "ATTLOG":
            self.stored.append(f"{pin}\t{when}\t{status}\t{verify}\t0\t0\t0")
            return
        self._index += 1
        fields = [
            f"time={when}",
            f"pin={pin}",
            f"cardno={card}",
            f"eventaddr={door}",
            "event=0",
            f"inoutstatus={status}",
            f"verifytype={verify}",
            f"index={self._index}",
        ]
        if temperature_c is not None:
            fields += [f"temperature={temperature_c}", "maskflag=1"]
        self.stored.append("\t".join(fields))

    async def upload(self) -> bool:
        """Post the stored records as one batch; True (and the batch dropped) only on a plain
        ``OK``. The terminal sends LF-separated lines with a trailing LF."""
        if not self.stored:
            return True
        params = {"SN": self.sn, "table": self.table, "Stamp": str(self.stamp)}
        body = ("\n".join(self.stored) + "\n").encode()
        answer = await self._request("POST", "/iclock/cdata", params, body)
        if answer.status == 200 and answer.text.lstrip().startswith("OK"):
            self.stamp += len(self.stored)
            self.stored = []
            return True
        return False  # kept: sent again after ErrorDelay

    async def poll(self) -> list[str]:
        """One command poll; runs (acknowledges) each command and returns them."""
        answer = await self._request("GET", "/iclock/getrequest", {"SN": self.sn})
        commands = [line for line in answer.text.splitlines() if line.startswith("C:")]
        for line in commands:
            _, command_id, command = line.split(":", 2)
            name = command.split(" ", 1)[0]
            result = f"ID={command_id}&Return=0&CMD={name}".encode()
            await self._request("POST", "/iclock/devicecmd", {"SN": self.sn}, result)
            self.executed.append(command_id)
        return commands
