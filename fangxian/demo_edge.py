"""The gate edge in ``fangxian run``: simulated devices speaking their vendors' own formats.

A demo compound of its own (``EdgeCompound``: a community with residents enrolled on the
terminal under their pseudonymous tokens, registered and unregistered plates) is loaded as
reference data beside the scripted communities. Its device register is written the way
``fangxian load devices`` writes one — a CSV validated row by row, credentials sealed with a
per-run key — and the edge service (``fangxian.edge.service.EdgeService``) runs in the demo's
event loop on a loopback port, producing to the embedded broker and following
``gate.decisions`` like ``fangxian edge`` does. Three fake devices (``infra.fake_devices``)
then take turns at the gate, over HTTP:

- a Hikvision face/temperature terminal with remote verification: a multipart ISAPI push
  (JSON part + JPEG, Digest auth) answered 200 at once, then the platform's
  ``PUT /ISAPI/AccessControl/remoteCheck`` to the terminal's own server (Digest auth);
- a Zhenshi/VZ plate camera at the car barrier (``AlarmInfoPlate``, a per-device secret in the
  URL path; now and then cut short the way some firmware sends it), answered in the response;
- a QR reader at the turnstile (``vgdecoderesult=…&&devicenumber=…``), answered ``code=…``.

The compound lives on the wall clock (its devices stamp the real time), apart from the
scripted communities, whose day runs faster than real time: an edge event cannot move their
event time. One request at a time, so the edge's fallback counter says exactly whether each
answer came from the core or from the fallback policy. The first answers of each kind are
printed zh-CN first with English beside, masked; the status line and the summary count them.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import itertools
import json
import logging
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from fangxian.core.codes import (
    credit_code_check_char,
    organisation_code_check_char,
    resident_id_check_char,
)
from fangxian.core.privacy import Pseudonymiser, mask_plate, mask_token
from fangxian.core.settings import Settings
from fangxian.edge.register import Register, SecretBox, load_devices, write_register
from fangxian.edge.service import EdgeConfig, EdgeService
from fangxian.edge.translate import event_id
from infra.fake_devices import (
    DeviceClient,
    FakeHikvisionTerminal,
    hikvision_event,
    hikvision_push,
    plate_alarm,
    qr_form,
)
from schemas import contract
from schemas.labels import DECISION_ZH

log = logging.getLogger(__name__)

#: the demo compound: county 350102 (福州市鼓楼区), organisation code ME000001 (E for edge)
_FIRST17 = "55350102ME000001" + organisation_code_check_char("ME000001")
EDGE_COMMUNITY = _FIRST17 + credit_code_check_char(_FIRST17)
TAG = "EDGE"
HIK_ID, PLATE_ID, QR_ID = f"{TAG}-E1-HIK", f"{TAG}-E2-PLATE", f"{TAG}-E1-QR"
FAMILY_ZH = {
    "hikvision": "海康人脸测温终端 Hikvision terminal",
    "plate": "车牌相机 plate camera",
    "qr": "二维码读头 QR reader",
}
#: device timeouts (ms): what a terminal's remote verification, a barrier and a turnstile wait
HIK_TIMEOUT_MS, PLATE_TIMEOUT_MS, QR_TIMEOUT_MS = 5000, 3000, 3000
#: seconds between two device requests (one at a time, round robin over the devices)
PACE_S = 0.25
SHOWN_ANSWERS = 6
_CHINA = dt.timezone(dt.timedelta(hours=8))
_PLATE_CHARS = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


@dataclass(frozen=True)
class EdgeCompound:
    """The demo compound's reference data. Raw ID numbers and plates exist only here, in the
    demo's memory, as the devices would see them; the records carry tokens."""

    residents: tuple[str, ...]  # resident tokens: what the terminal's person list holds
    coders: tuple[str, ...]  # residents who show their resident code at the QR reader
    red_code: str  # a resident walking about with a red health code (QR reader: refused)
    plates: tuple[str, ...]  # registered plates (raw, as the camera reads them)
    strangers: tuple[str, ...]  # plates nobody registered
    records: tuple[tuple[str, dict[str, Any]], ...]

    @classmethod
    def build(cls, pseudonyms: Pseudonymiser, now_ms: int, seed: int = 7) -> EdgeCompound:
        rng = random.Random(f"fangxian-demo-edge:{seed}")
        rules = dict(contract.named_examples("CommunityRules")["CommunityRules"])
        rules.update(
            community_id=EDGE_COMMUNITY,
            entry_limit_scope="NONE",
            curfew_start_minute=None,
            curfew_end_minute=None,
            updated_at=now_ms,
        )
        records: list[tuple[str, dict[str, Any]]] = [("CommunityRules", rules)]
        residents = []
        for k in range(12):
            born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randint(0, 20_000))
            first17 = f"350102{born:%Y%m%d}{rng.randint(0, 999):03d}"
            token = pseudonyms.token("resident", first17 + resident_id_check_char(first17))
            residents.append(token)
            resident = dict(contract.named_examples("Resident")["Resident.normal"])
            resident.update(
                resident_id=token,
                community_id=EDGE_COMMUNITY,
                household_id=pseudonyms.token("household", f"{EDGE_COMMUNITY}{k // 2}"),
                status="NORMAL",
                observation_start=None,
                key_groups=[],
                face_consent=True,  # enrolled on the face terminal with consent
                updated_at=now_ms,
            )
            records.append(("Resident", resident))

        def plate() -> str:
            return "闽A" + "".join(rng.choice(_PLATE_CHARS) for _ in range(5))

        plates = tuple(plate() for _ in range(4))
        for k, raw in enumerate(plates):
            vehicle = dict(contract.named_examples("Vehicle")["Vehicle"])
            vehicle.update(
                vehicle_id=pseudonyms.token("plate", raw),
                community_id=EDGE_COMMUNITY,
                owner_resident_id=residents[k],
                valid_until=None,
                updated_at=now_ms,
            )
            records.append(("Vehicle", vehicle))
        return cls(
            residents=tuple(residents[:6]),
            coders=tuple(residents[6:-1]),
            red_code=residents[-1],
            plates=plates,
            strangers=(plate(), plate()),
            records=tuple(records),
        )


@dataclass(frozen=True)
class DeviceSecrets:
    """Per-run credentials: the terminal's push (Digest) and its own ISAPI server (remote
    verification), the camera's URL path secret. Sealed in the register, never printed."""

    hik_user: str = "edge"
    hik_password: str = field(default_factory=lambda: secrets.token_urlsafe(12), repr=False)
    terminal_user: str = "admin"
    terminal_password: str = field(default_factory=lambda: secrets.token_urlsafe(12), repr=False)
    camera_path: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    register_key: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)


def write_demo_register(data_dir: Path, terminal_port: int, creds: DeviceSecrets) -> Path:
    """The demo's register, through the loader ``fangxian load devices`` uses: a CSV in the
    documented columns, validated with line numbers, credentials sealed; the CSV (clear
    credentials) is removed once the sealed register is written."""
    source = data_dir / "devices.csv"
    rows = [
        {
            "device_id": HIK_ID,
            "vendor": "hikvision",
            "mac": "aa:bb:cc:dd:ee:01",
            "community_id": EDGE_COMMUNITY,
            "gate_id": f"{TAG}-E1",
            "direction": "IN",
            "measures": "temperature;face",
            "answers": "wait",
            "timeout_ms": str(HIK_TIMEOUT_MS),
            "addresses": "127.0.0.1",
            "auth": "digest",
            "username": creds.hik_user,
            "password": creds.hik_password,
            "callback_url": f"http://127.0.0.1:{terminal_port}",
            "callback_username": creds.terminal_user,
            "callback_password": creds.terminal_password,
        },
        {
            "device_id": PLATE_ID,
            "vendor": "plate",
            "serial": "IVS-0001",
            "community_id": EDGE_COMMUNITY,
            "gate_id": f"{TAG}-E2",
            "direction": "IN",
            "measures": "plate",
            "answers": "wait",
            "timeout_ms": str(PLATE_TIMEOUT_MS),
            "addresses": "127.0.0.1",
            "auth": "path",
            "password": creds.camera_path,
        },
        {
            "device_id": QR_ID,
            "vendor": "qr",
            "device_number": "R-01",
            "community_id": EDGE_COMMUNITY,
            "gate_id": f"{TAG}-E1",
            "direction": "IN",
            "measures": "qr",
            "answers": "wait",
            "timeout_ms": str(QR_TIMEOUT_MS),
            "addresses": "127.0.0.1",
            "auth": "none",
        },
    ]
    with source.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    try:
        loaded = load_devices(source, SecretBox(creds.register_key))
    finally:
        source.unlink()
    if loaded.errors:  # a bug in the rows above, not a user error
        raise RuntimeError(f"demo register rejected: {loaded.errors}")
    target = data_dir / "devices.register.json"
    write_register(loaded.records, target)
    return target


@dataclass
class Answer:
    family: str
    subject: str  # masked
    shown: str  # what the device was told, in its own terms
    opens: bool
    source: str  # "core" or "edge-fallback"
    ms: float
    core: tuple[str, tuple[str, ...]] | None = None  # the core's decision and reasons


class EdgeDemo:
    """The edge service, the fake terminal's ISAPI server and the device loop of the demo."""

    def __init__(self, settings: Settings, data_dir: Path, *, seed: int = 7) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.pseudonyms = Pseudonymiser.from_text(settings.pseudonym_key)
        self.compound = EdgeCompound.build(self.pseudonyms, int(time.time() * 1000), seed)
        self.creds = DeviceSecrets()
        self.terminal = FakeHikvisionTerminal(
            user=self.creds.terminal_user, password=self.creds.terminal_password
        )
        self.service: EdgeService | None = None
        self.answers: Counter[tuple[str, str]] = Counter()  # (family, source) → n
        self.missed: Counter[str] = Counter()  # family → requests not answered in time
        self.shown: set[tuple[str, bool]] = set()
        self.core: dict[str, tuple[str, tuple[str, ...]]] = {}  # event id → core decision
        self._qr_core: dict[str, tuple[str, tuple[str, ...]]] = {}  # subject → latest
        self._rng = random.Random(f"fangxian-demo-edge-traffic:{seed}")
        self._core_live = asyncio.Event()  # the decide stage has decided something

    # --- set-up --------------------------------------------------------------------------

    def reference_records(self) -> tuple[tuple[str, dict[str, Any]], ...]:
        return self.compound.records

    async def start(self) -> str:
        """Start the terminal's server and the edge; returns the line that introduces them."""
        port = await self.terminal.start()
        register_path = write_demo_register(self.data_dir, port, self.creds)
        config = EdgeConfig(
            host="127.0.0.1",
            port=0,
            register_path=str(register_path),
            register_key=self.creds.register_key,
            outbox_path=str((self.data_dir / "edge-outbox.sqlite").resolve()),
            metrics_port=0,
        )
        register = Register.from_file(register_path, config.register_key)
        self.service = EdgeService(self.settings, config, register, registry=CollectorRegistry())
        await self.service.start()
        return (
            f"边缘网关 gate edge: http://127.0.0.1:{self.service.port} — 海康终端、车牌相机、"
            f"二维码读头按各自厂商格式接入 a Hikvision terminal, a plate camera and a QR reader "
            f"in their vendors' formats (/metrics on {self.service.metrics_port})"
        )

    async def ready(self, timeout_s: float = 30.0) -> None:
        """Until the edge produces to Kafka and follows the decisions."""
        assert self.service is not None
        await asyncio.wait_for(
            asyncio.gather(
                self.service.kafka_connected.wait(), self.service.decisions_following.wait()
            ),
            timeout_s,
        )

    # --- the core's decisions (from the demo's status board) -------------------------------

    def on_decision(self, decision: dict[str, Any]) -> None:
        """A GateDecision the core made (the demo's board passes on every one)."""
        self._core_live.set()
        if decision.get("community_id") != EDGE_COMMUNITY:
            return
        verdict = (str(decision["decision"]), tuple(decision.get("reasons") or ()))
        self.core[decision["event_id"]] = verdict
        self._qr_core[decision["subject_id"]] = verdict
        if len(self.core) > 10_000:
            self.core.clear()

    async def _core_of(self, key: str, *, qr: bool, wait_s: float = 1.0) -> Any:
        book = self._qr_core if qr else self.core
        deadline = time.monotonic() + wait_s
        while key not in book and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return book.pop(key, None) if qr else book.get(key)

    def _fallbacks(self) -> float:
        assert self.service is not None
        return sum(
            s.value
            for m in self.service.metrics.fallback_answers.collect()
            for s in m.samples
            if s.name.endswith("_total")
        )

    # --- the devices ---------------------------------------------------------------------

    async def drive(self, stop: asyncio.Event) -> None:
        """Round robin over the three devices, one request at a time, until ``stop``."""
        assert self.service is not None
        base = f"http://127.0.0.1:{self.service.port}"
        serials = itertools.count(1)
        steps = (self._terminal_pass, self._car, self._qr_scan)
        # the first gate traffic once the decide stage is deciding (its first batch takes a
        # moment): a device's first wait is then for its own decision, not for the start-up
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._core_live.wait(), 15)
        async with DeviceClient(base, timeout_s=10) as client:
            for n in itertools.count():
                if stop.is_set():
                    break
                try:
                    await steps[n % 3](client, next(serials))
                except (aiohttp.ClientError, OSError, TimeoutError) as err:
                    log.warning("演示设备请求失败 demo device request failed: %s", err)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), PACE_S)

    async def _terminal_pass(self, client: DeviceClient, n: int) -> None:
        resident = self.compound.residents[n % len(self.compound.residents)]
        fever = n % 7 == 0
        temperature = 38.4 if fever else round(self._rng.uniform(36.1, 36.9), 1)
        now = dt.datetime.now(_CHINA)
        body, ctype = hikvision_push(
            hikvision_event(
                serial_no=n,
                employee_no=resident,  # enrolled under the token: the device holds no raw ID
                temperature_c=temperature,
                remote_check=True,
                date_time=now.isoformat(timespec="seconds"),
            )
        )
        before = self._fallbacks()
        started = time.perf_counter()
        seen = self.terminal.expect(n)
        pushed = await client.post(
            "/edge/hikvision/", body, ctype, digest=(self.creds.hik_user, self.creds.hik_password)
        )
        if pushed.status != 200:
            self.missed["hikvision"] += 1
            return
        try:
            check = await asyncio.wait_for(seen, HIK_TIMEOUT_MS / 1000)
        except TimeoutError:
            self.missed["hikvision"] += 1
            return
        ms = (check.at - started) * 1000
        opens = check.check_result == "success"
        core = await self._core_of(event_id(HIK_ID, str(n)), qr=False)
        self._record(
            Answer(
                "hikvision",
                f"住户 resident {mask_token(resident)} 体温 temperature {temperature:.1f}°C",
                f"远程核验 remoteCheck {check.check_result}「{check.info}」",
                opens,
                "edge-fallback" if self._fallbacks() > before else "core",
                ms,
                core,
            )
        )

    async def _car(self, client: DeviceClient, n: int) -> None:
        stranger = n % 4 == 2
        pool = self.compound.strangers if stranger else self.compound.plates
        plate = pool[n % len(pool)]
        sec = int(time.time())
        body = plate_alarm(
            serialno="IVS-0001",
            licence=plate,
            plate_id=n,
            sec=sec,
            truncate=n % 5 == 0,  # some firmware cuts the JSON short; the edge repairs it
        )
        before = self._fallbacks()
        answer = await client.post(f"/d/{self.creds.camera_path}/edge/plate/", body, None)
        if answer.status != 200:
            self.missed["plate"] += 1
            return
        response = json.loads(answer.body)["Response_AlarmInfoPlate"]
        opens = response.get("info") == "ok"
        core = await self._core_of(event_id(PLATE_ID, f"{n}@{sec}.120000"), qr=False)
        self._record(
            Answer(
                "plate",
                f"车牌 plate {mask_plate(plate)}"
                + (" 未登记 unregistered" if stranger else " 已登记 registered"),
                f"道闸 barrier info={response.get('info')}「{response.get('content', '')}」",
                opens,
                "edge-fallback" if self._fallbacks() > before else "core",
                answer.seconds * 1000,
                core,
            )
        )

    async def _qr_scan(self, client: DeviceClient, n: int) -> None:
        red = n % 5 == 0
        resident = (
            self.compound.red_code if red else self.compound.coders[n % len(self.compound.coders)]
        )
        code = f"FX1R:{resident}:{'R' if red else 'G'}"  # the community's resident code
        before = self._fallbacks()
        self._qr_core.pop(resident, None)
        answer = await client.post(
            "/edge/qr/", qr_form(code, "R-01"), "application/x-www-form-urlencoded"
        )
        text = answer.body.decode(errors="replace").strip()
        if answer.status != 200 or not text.startswith("code="):
            self.missed["qr"] += 1
            return
        core = await self._core_of(resident, qr=True)
        self._record(
            Answer(
                "qr",
                f"住户码 resident code {mask_token(resident)} "
                + ("红码 RED" if red else "绿码 GREEN"),
                f"闸机 turnstile {text}",
                text == "code=0000",
                "edge-fallback" if self._fallbacks() > before else "core",
                answer.seconds * 1000,
                core,
            )
        )

    def _record(self, answer: Answer) -> None:
        self.answers[(answer.family, answer.source)] += 1
        key = (answer.family, answer.opens)
        if key in self.shown or len(self.shown) >= SHOWN_ANSWERS:
            return
        self.shown.add(key)
        if answer.core is not None:
            decision, reasons = answer.core
            judged = f"{DECISION_ZH.get(decision, decision)} {decision}" + (
                f" ({', '.join(reasons)})" if reasons else ""
            )
        else:
            judged = "-"
        source = (
            "核心判定 core decision"
            if answer.source == "core"
            else "兜底策略 edge fallback (the core was late)"
        )
        print(
            f"🚪 {FAMILY_ZH[answer.family]}: {answer.subject} → {answer.shown} "
            f"= {judged}，{source}，{answer.ms:.0f} ms",
            flush=True,
        )

    # --- the tally -----------------------------------------------------------------------

    def status(self) -> str:
        total = sum(self.answers.values())
        fallback = sum(n for (_, source), n in self.answers.items() if source != "core")
        return f"边缘 edge answered={total} (core={total - fallback}, fallback={fallback})"

    def summary(self, edge_decisions: int | None = None) -> str:
        lines = [
            "边缘网关 gate edge — 设备请求经边缘应答 device requests answered through the edge:"
        ]
        for family in FAMILY_ZH:
            core = self.answers[(family, "core")]
            fallback = self.answers[(family, "edge-fallback")]
            lines.append(
                f"  {family:<10} 应答 answered={core + fallback} 核心判定 core={core} "
                f"兜底 fallback={fallback} 超时未答 unanswered={self.missed[family]}"
            )
        if edge_decisions is not None:
            lines.append(f"  核心对边缘事件的判定 core decisions on edge events: {edge_decisions}")
        return "\n".join(lines)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Until the outbox is produced (so every answered event is in Kafka)."""
        assert self.service is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            depth, _ = await asyncio.to_thread(self.service.outbox.depth_and_age)
            if depth == 0:
                return
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
        await self.terminal.stop()
