"""``fangxian edge``: the HTTP service where gate devices meet fangxian (docs/edge.md).

One request, in order (the adapters translate; everything else is here, once):

1. route by path prefix to the family's adapter (``/d/<secret>/…`` carries a per-device secret);
2. ``adapter.parse`` — a malformed payload gets the family's refusal and a redacted dead letter;
3. the register: the device by serial / MAC / device number *and* its source address, then its
   credentials (HTTP Digest or Basic, or the path secret) — unknown or unauthenticated: the
   family's refusal, counted, nothing produced; then the per-device rate limit;
4. raw identifiers → keyed-HMAC tokens (``translate``); contract records with event ids from the
   device's own serials;
5. the outbox (fsync) — only then is the device answered;
6. for a device that waits: the decision on ``gate.decisions`` matched by event id, or — when it
   is not there in time — the fallback policy over the replica of the reference topics, marked
   ``edge-fallback``; in the response or by a callback (Hikvision ``remoteCheck``, Digest auth).

Background: the outbox is produced to Kafka (idempotent, acks=all, partition = murmur2(key) like
the Java client) and marked produced; the decisions are followed read_uncommitted (a 500 ms
fetch wait: the broker answers as soon as a decision is there); a core decision that disagrees
with a fallback answer raises ``EDGE_FALLBACK_DISAGREED``.

Nothing raw leaves this module: logs name device ids and event ids only; dead letters keep the
reason, a digest and the length of the body, never the body.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import os
import secrets
import ssl
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from fangxian.core.kafka_security import kafka_client_kwargs
from fangxian.core.metrics import Metrics
from fangxian.core.privacy import Pseudonymiser
from fangxian.core.settings import Settings
from fangxian.edge.adapter import (
    DeviceAdapter,
    DeviceRequest,
    DeviceResponse,
    MalformedRequest,
    NativeEvent,
    ParsedRequest,
    RefusalReason,
    Verdict,
)
from fangxian.edge.adapters.generic import OPENAPI, GenericJsonAdapter
from fangxian.edge.adapters.hikvision import HikvisionAdapter
from fangxian.edge.adapters.plate import PlateCameraAdapter
from fangxian.edge.adapters.qr import QrReaderAdapter
from fangxian.edge.fallback import FallbackPolicies, Replica, fallback_decision
from fangxian.edge.meter import EdgeMetrics
from fangxian.edge.outbox import FallbackAnswer, Outbox, OutRow
from fangxian.edge.register import DeviceEntry, Register
from fangxian.edge.translate import contract_records, resolve_subject
from schemas import Codec, InvalidEvent
from schemas.partitioner import partition_for
from schemas.topics import topic_and_key

log = logging.getLogger(__name__)

DIGEST_REALM = "fangxian-edge"
NONCE_TTL_S = 300
DECIDED_CACHE = 200_000
EDGE_ALERT = "EDGE_FALLBACK_DISAGREED"
#: /healthz says Kafka is not taking records once an accepted one has waited this long
STALLED_S = 30.0
_EMPTY: Mapping[str, Mapping[str, Any]] = {}


def default_adapters() -> list[DeviceAdapter]:
    """The families this service speaks; another module adds itself here (one line)."""
    adapters: list[DeviceAdapter] = [
        HikvisionAdapter(),
        PlateCameraAdapter(),
        QrReaderAdapter(),
        GenericJsonAdapter(),
    ]
    for module, name in (
        ("fangxian.edge.adapters.dahua", "DahuaAdapter"),
        ("fangxian.edge.adapters.zkteco", "ZktecoAdapter"),
        ("fangxian.edge.adapters.mqtt", "MqttAdapter"),  # topics, not HTTP paths
    ):
        with contextlib.suppress(ImportError, AttributeError):
            adapters.append(getattr(__import__(module, fromlist=[name]), name)())
    return adapters


@dataclass(frozen=True)
class EdgeConfig:
    """The edge's own settings (``FANGXIAN_EDGE_*``), read once; Kafka, topics and the pseudonym
    key come from the project's ``Settings``."""

    host: str = "127.0.0.1"
    port: int = 8090
    register_path: str = "devices.register.json"
    register_key: str = field(default="", repr=False)
    outbox_path: str = "edge-outbox.sqlite"
    fallback_path: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    rate_per_s: float = 20.0
    rate_burst: float = 40.0
    metrics_port: int = 9111
    #: answer this long before the device's own timeout (network and device slack)
    answer_margin_ms: int = 150
    #: how long a produce may keep retrying before the send is retried from the outbox
    kafka_request_timeout_ms: int = 120_000
    #: MQTT gateways (docs/edge.md, "MQTT"): the broker the edge subscribes to; empty = none
    mqtt_host: str = ""
    mqtt_port: int = 1883
    mqtt_username: str = ""
    mqtt_password: str = field(default="", repr=False)
    mqtt_client_id: str = "fangxian-edge"
    #: several edge processes share the pass subscription ($share/<group>/...)
    mqtt_shared_group: str = ""
    mqtt_tls: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EdgeConfig:
        e = os.environ if env is None else env

        def get(name: str, default: str) -> str:
            path = e.get(f"FANGXIAN_EDGE_{name}_FILE")
            if path:
                return Path(path).read_text(encoding="utf-8").strip()
            return e.get(f"FANGXIAN_EDGE_{name}", default)

        d = cls()
        return cls(
            host=get("HOST", d.host),
            port=int(get("PORT", str(d.port))),
            register_path=get("REGISTER", d.register_path),
            register_key=get("REGISTER_KEY", ""),
            outbox_path=get("OUTBOX", d.outbox_path),
            fallback_path=get("FALLBACK", ""),
            tls_cert=get("TLS_CERT", ""),
            tls_key=get("TLS_KEY", ""),
            rate_per_s=float(get("RATE", str(d.rate_per_s))),
            rate_burst=float(get("BURST", str(d.rate_burst))),
            metrics_port=int(get("METRICS_PORT", str(d.metrics_port))),
            answer_margin_ms=int(get("ANSWER_MARGIN_MS", str(d.answer_margin_ms))),
            mqtt_host=get("MQTT_HOST", ""),
            mqtt_port=int(get("MQTT_PORT", str(d.mqtt_port))),
            mqtt_username=get("MQTT_USERNAME", ""),
            mqtt_password=get("MQTT_PASSWORD", ""),
            mqtt_client_id=get("MQTT_CLIENT_ID", d.mqtt_client_id),
            mqtt_shared_group=get("MQTT_SHARED_GROUP", ""),
            mqtt_tls=get("MQTT_TLS", "").lower() in ("1", "true", "yes"),
        )


class _Bucket:
    __slots__ = ("last", "tokens")

    def __init__(self, tokens: float) -> None:
        self.tokens = tokens
        self.last = time.monotonic()


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _challenge_params(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    _, _, rest = header.partition(" ")
    for item in rest.split(","):
        name, _, value = item.strip().partition("=")
        out[name.strip().lower()] = value.strip().strip('"')
    return out


def digest_header(challenge: str, method: str, uri: str, user: str, password: str) -> str:
    """RFC 7616 (MD5, qop=auth) ``Authorization`` for a device's Digest challenge."""
    p = _challenge_params(challenge)
    cnonce, nc = secrets.token_hex(8), "00000001"
    ha1 = _md5(f"{user}:{p.get('realm', '')}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    response = _md5(f"{ha1}:{p.get('nonce', '')}:{nc}:{cnonce}:auth:{ha2}")
    opaque = f', opaque="{p["opaque"]}"' if "opaque" in p else ""
    return (
        f'Digest username="{user}", realm="{p.get("realm", "")}", nonce="{p.get("nonce", "")}", '
        f'uri="{uri}", qop=auth, nc={nc}, cnonce="{cnonce}", response="{response}", '
        f"algorithm=MD5{opaque}"
    )


class EdgeService:
    """The edge: an aiohttp server plus the outbox producer, decision follower and replica."""

    def __init__(
        self,
        settings: Settings,
        config: EdgeConfig,
        register: Register,
        *,
        policies: FallbackPolicies | None = None,
        adapters: Sequence[DeviceAdapter] | None = None,
        registry: CollectorRegistry | None = None,
        kafka: bool = True,
    ) -> None:
        self.settings = settings
        self.config = config
        self.register = register
        self.policies = policies or (
            FallbackPolicies.from_file(config.fallback_path)
            if config.fallback_path
            else FallbackPolicies()
        )
        self.adapters = list(adapters) if adapters is not None else default_adapters()
        self._routes = sorted(
            ((prefix, a) for a in self.adapters for prefix in a.path_prefixes),
            key=lambda pa: -len(pa[0]),
        )
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = EdgeMetrics.create(self.registry)
        self._core_metrics = Metrics.create(CollectorRegistry())
        self.pseudonyms = Pseudonymiser.from_text(settings.pseudonym_key)
        self.codec = Codec()
        self.kafka = kafka
        self.outbox = Outbox(config.outbox_path)
        self._fallbacks: dict[str, FallbackAnswer] = self.outbox.fallbacks()
        self._waiters: dict[str, list[asyncio.Future[tuple[str, tuple[str, ...]]]]] = {}
        self._decided: OrderedDict[str, tuple[str, tuple[str, ...]]] = OrderedDict()
        self._buckets: dict[str, _Bucket] = {}
        self._nonce_key = secrets.token_bytes(32)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._runners: list[web.AppRunner] = []
        self._session: aiohttp.ClientSession | None = None
        self._reference: Any = None
        self._partitions: dict[str, int] = {}
        self.port = 0
        self.metrics_port = 0
        self.kafka_connected = asyncio.Event()
        self.decisions_following = asyncio.Event()
        self.mqtt_connected = asyncio.Event()  # the MQTT subscription is in place
        self._outbox_age = 0.0  # seconds the oldest accepted, unsent record has waited

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> int:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        ctx = None
        if self.config.tls_cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.config.tls_cert, self.config.tls_key or None)
        site = web.TCPSite(runner, self.config.host, self.config.port, ssl_context=ctx)
        await site.start()
        self._runners.append(runner)
        self.port = _bound_port(site)
        if self.config.metrics_port >= 0:
            mapp = web.Application()
            mapp.router.add_get("/metrics", self._metrics)
            mrunner = web.AppRunner(mapp, access_log=None, handle_signals=False)
            await mrunner.setup()
            msite = web.TCPSite(mrunner, self.config.host, self.config.metrics_port)
            await msite.start()
            self._runners.append(mrunner)
            self.metrics_port = _bound_port(msite)
        if self.kafka:
            self._tasks.append(asyncio.create_task(self._produce_forever(), name="edge-produce"))
            self._tasks.append(asyncio.create_task(self._follow_decisions(), name="edge-decide"))
            self._tasks.append(asyncio.create_task(self._follow_reference(), name="edge-replica"))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="edge-gauges"))
        if self.config.mqtt_host:
            from fangxian.edge.mqtt_transport import MqttTransportConfig, run_mqtt_transport

            c = self.config
            mqtt = MqttTransportConfig(
                host=c.mqtt_host,
                port=c.mqtt_port,
                username=c.mqtt_username or None,
                password=c.mqtt_password or None,
                client_id=c.mqtt_client_id,
                shared_group=c.mqtt_shared_group or None,
                tls=ssl.create_default_context() if c.mqtt_tls else None,
            )
            self._tasks.append(
                asyncio.create_task(
                    run_mqtt_transport(mqtt, self.handle, connected=self.mqtt_connected),
                    name="edge-mqtt",
                )
            )
        log.info(
            "边缘网关已启动 edge listening on %s:%d (%d devices registered)",
            self.config.host,
            self.port,
            len(self.register),
        )
        return self.port

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for runner in self._runners:
            await runner.cleanup()
        if self._reference is not None:
            with contextlib.suppress(Exception):
                await self._reference.stop()
        if self._session is not None:
            await self._session.close()
        self.outbox.close()

    # --- HTTP ----------------------------------------------------------------------------

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain")

    def _route(self, path: str) -> DeviceAdapter | None:
        for prefix, adapter in self._routes:
            if path.startswith(prefix) or path == prefix.rstrip("/"):
                return adapter
        return None

    async def handle(self, dreq: DeviceRequest) -> DeviceResponse:
        """A request that did not come over HTTP (an MQTT gateway's pass): the same register
        check, pseudonyms, outbox and wait for the decision as an HTTP device's."""
        started = time.perf_counter()
        adapter = self._route(dreq.path)
        if adapter is None:
            return DeviceResponse.text("no device family for this topic / 主题不对", 404)
        response, outcome, waited = await self._serve(adapter, dreq, None)
        self.metrics.requests.labels(vendor=adapter.vendor, outcome=outcome).inc()
        self.metrics.latency.labels(vendor=adapter.vendor, waited=str(waited).lower()).observe(
            time.perf_counter() - started
        )
        return response

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        path = request.path
        if path == "/openapi.json":
            return web.json_response(OPENAPI)
        if path == "/healthz":
            # the producer retries inside its client and never says Kafka is gone: an accepted
            # record waiting longer than STALLED_S is what shows it (a 30 s broker outage read
            # kafka=true in all 54 samples before)
            stalled = self._outbox_age > STALLED_S
            return web.json_response(
                {
                    "ok": True,
                    "kafka": self.kafka_connected.is_set() and not stalled,
                    "outbox_oldest_s": round(self._outbox_age, 1),
                }
            )
        secret = None
        if path.startswith("/d/"):
            _, _, rest = path[3:].partition("/")
            secret, path = path[3:].split("/", 1)[0], "/" + rest
        adapter = self._route(path)
        if adapter is None:
            return web.Response(status=404, text="no device family at this path / 路径不对")
        body = await request.read()
        peer = (request.remote or "").removeprefix("::ffff:")
        device_request = DeviceRequest(
            method=request.method,
            path=path,
            query={k: v for k, v in request.query.items()},
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            peer=peer,
            path_secret=secret,
        )
        response, outcome, waited = await self._serve(adapter, device_request, request)
        self.metrics.requests.labels(vendor=adapter.vendor, outcome=outcome).inc()
        self.metrics.latency.labels(vendor=adapter.vendor, waited=str(waited).lower()).observe(
            time.perf_counter() - started
        )
        return web.Response(status=response.status, body=response.body, headers=response.headers)

    async def _serve(
        self, adapter: DeviceAdapter, dreq: DeviceRequest, request: web.Request | None
    ) -> tuple[DeviceResponse, str, bool]:
        started = time.perf_counter()
        try:
            parsed = adapter.parse(dreq)
        except MalformedRequest as err:
            await self._dead_letter(adapter.vendor, err, dreq.body)
            log.warning(
                "设备报文无法解析 malformed %s request from %s: %s",
                adapter.vendor,
                dreq.peer,
                err.reason,
            )
            return adapter.refuse(RefusalReason.MALFORMED), "malformed", False
        entry = self.register.find(adapter.vendor, parsed.identity, dreq.peer)
        if entry is None or not entry.address_allowed(dreq.peer):
            log.warning("未登记设备 unknown %s device from %s", adapter.vendor, dreq.peer)
            return adapter.refuse(RefusalReason.UNKNOWN_DEVICE), "unknown_device", False
        if not self._authenticated(entry, dreq, request):
            refusal = adapter.refuse(RefusalReason.UNAUTHENTICATED)
            if entry.auth == "digest":
                refusal = dataclasses.replace(
                    refusal,
                    status=401,
                    headers=(*refusal.headers, ("WWW-Authenticate", self._challenge())),
                )
            elif entry.auth == "basic":
                refusal = dataclasses.replace(
                    refusal,
                    status=401,
                    headers=(
                        *refusal.headers,
                        ("WWW-Authenticate", f'Basic realm="{DIGEST_REALM}"'),
                    ),
                )
            return refusal, "unauthenticated", False
        if not self._admit(entry.device_id):
            return adapter.refuse(RefusalReason.RATE_LIMITED), "rate_limited", False
        self.metrics.device_last_seen.labels(device_id=entry.device_id, vendor=entry.vendor).set(
            time.time()
        )
        if not parsed.events:
            return adapter.answer(parsed, ()), "answered", False
        events = tuple(
            e if e.event_serial else dataclasses.replace(e, event_serial=uuid.uuid4().hex)
            for e in parsed.events
        )
        parsed = dataclasses.replace(parsed, events=events)
        arrival_ms = int(time.time() * 1000)
        scans: list[dict[str, Any]] = []
        rows: list[OutRow] = []
        for event in events:
            subject = resolve_subject(event, entry, self.pseudonyms)
            for name, record in contract_records(event, entry, subject, arrival_ms):
                topic, key = topic_and_key(self.settings.topics, name, record)
                rows.append(
                    OutRow(record["event_id"], name, topic, key, self.codec.encode(name, record))
                )
                if name == "GateScan":
                    scans.append(record)
        waits = entry.waits and parsed.delivery != "none" and not all(e.offline for e in events)
        futures = [self._wait_for(s["event_id"]) for s in scans] if waits else []
        try:
            flags = await self.outbox.append(rows)
        except Exception:
            log.exception("outbox append failed; %s told to resend", entry.device_id)
            for s in scans:
                self._waiters.pop(s["event_id"], None)
            return adapter.refuse(RefusalReason.UNAVAILABLE), "unavailable", False
        self._wake.set()
        new = sum(flags)
        if new:
            self.metrics.events.labels(vendor=adapter.vendor).inc(new)
        outcome = "answered" if new else "duplicate"
        if not waits:
            return adapter.answer(parsed, ()), outcome, False
        deadline = started + max(0.05, (entry.timeout_ms - self.config.answer_margin_ms) / 1000)
        if parsed.delivery == "callback":
            task = asyncio.create_task(
                self._callback(adapter, parsed, entry, scans, futures, deadline)
            )
            self._tasks.append(task)
            task.add_done_callback(self._forget_task)
            return adapter.answer(parsed, ()), outcome, False
        verdicts = await self._verdicts(entry, scans, events, futures, deadline)
        if any(v.source == "edge-fallback" for v in verdicts):
            outcome = "fallback"
        return adapter.answer(parsed, verdicts), outcome, True

    def _forget_task(self, task: asyncio.Task[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    # --- authentication and rate --------------------------------------------------------

    def _challenge(self) -> str:
        stamp = str(int(time.time()))
        mac = hmac.new(self._nonce_key, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        nonce = base64.b64encode(f"{stamp}:{mac}".encode()).decode()
        return f'Digest realm="{DIGEST_REALM}", qop="auth", nonce="{nonce}", algorithm=MD5'

    def _nonce_fresh(self, nonce: str) -> bool:
        try:
            stamp, mac = base64.b64decode(nonce).decode().split(":", 1)
        except (ValueError, UnicodeDecodeError):
            return False
        good = hmac.new(self._nonce_key, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        return hmac.compare_digest(good, mac) and time.time() - int(stamp) < NONCE_TTL_S

    def _authenticated(
        self, entry: DeviceEntry, dreq: DeviceRequest, request: web.Request | None
    ) -> bool:
        if entry.auth == "none":
            return True
        if entry.auth == "path":
            return (
                dreq.path_secret is not None
                and entry.password is not None
                and (hmac.compare_digest(dreq.path_secret.encode(), entry.password.encode()))
            )
        header = dreq.headers.get("authorization", "")
        if entry.auth == "basic":
            if not header.lower().startswith("basic "):
                return False
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return (
                entry.username is not None
                and entry.password is not None
                and hmac.compare_digest(user.encode(), entry.username.encode())
                and hmac.compare_digest(password.encode(), entry.password.encode())
            )
        if not header.lower().startswith("digest "):
            return False
        p = _challenge_params(header)
        if p.get("username") != entry.username or not self._nonce_fresh(p.get("nonce", "")):
            return False
        ha1 = _md5(f"{entry.username}:{DIGEST_REALM}:{entry.password}")
        ha2 = _md5(f"{dreq.method}:{p.get('uri', '')}")
        expected = _md5(
            f"{ha1}:{p.get('nonce')}:{p.get('nc')}:{p.get('cnonce')}:{p.get('qop')}:{ha2}"
        )
        return hmac.compare_digest(expected, p.get("response", ""))

    def _admit(self, device_id: str) -> bool:
        bucket = self._buckets.get(device_id)
        if bucket is None:
            bucket = self._buckets[device_id] = _Bucket(self.config.rate_burst)
        now = time.monotonic()
        bucket.tokens = min(
            self.config.rate_burst, bucket.tokens + (now - bucket.last) * self.config.rate_per_s
        )
        bucket.last = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    # --- verdicts ------------------------------------------------------------------------

    def _wait_for(self, event_id: str) -> asyncio.Future[tuple[str, tuple[str, ...]]]:
        future: asyncio.Future[tuple[str, tuple[str, ...]]] = (
            asyncio.get_running_loop().create_future()
        )
        known = self._decided.get(event_id)
        if known is not None:
            future.set_result(known)
        else:
            self._waiters.setdefault(event_id, []).append(future)
        return future

    def replica(self) -> Replica:
        store = self._reference
        if store is None:
            return Replica(_EMPTY, _EMPTY, _EMPTY, _EMPTY)
        r = store.records
        return Replica(r["residents"], r["vehicles"], r["passes"], r["rules"])

    async def _verdicts(
        self,
        entry: DeviceEntry,
        scans: Sequence[dict[str, Any]],
        events: Sequence[NativeEvent],
        futures: Sequence[asyncio.Future[tuple[str, tuple[str, ...]]]],
        deadline: float,
    ) -> list[Verdict]:
        # a resend of an event the gate was already told from the fallback: the same answer at
        # once (a camera resends because it waited; waiting again would only make it worse)
        told = [self._fallbacks.get(s["event_id"]) for s in scans]
        waiting = [f for f, t in zip(futures, told, strict=True) if t is None]
        remaining = max(0.0, deadline - time.perf_counter())
        if waiting:
            await asyncio.wait(waiting, timeout=remaining)
        verdicts: list[Verdict] = []
        remembered: list[asyncio.Future[list[bool]]] = []
        for scan, event, future, earlier in zip(scans, events, futures, told, strict=True):
            if future.done() and not future.cancelled():
                decision, reasons = future.result()
                verdicts.append(Verdict(event.event_serial, decision, "core", reasons))  # type: ignore[arg-type]
                continue
            pending = self._waiters.get(scan["event_id"], [])
            if future in pending:
                pending.remove(future)
            if not pending:
                self._waiters.pop(scan["event_id"], None)
            if earlier is not None:
                verdicts.append(
                    Verdict(event.event_serial, earlier.decision, "edge-fallback", earlier.reasons)  # type: ignore[arg-type]
                )
                continue
            decision, reasons = fallback_decision(
                scan, self.replica(), self.policies.of(entry.community_id)
            )
            answer = FallbackAnswer(
                scan["event_id"],
                decision,
                reasons,
                scan["community_id"],
                scan["gate_id"],
                scan["device_id"],
                scan["subject_id"],
                scan["event_time"],
                int(time.time() * 1000),
            )
            late = self._decided.get(scan["event_id"])
            if late is None:  # the core may still decide: remember what the gate was told
                self._fallbacks[scan["event_id"]] = answer
                # queued now (a forget of this event comes after it), in the next group commit
                remembered.append(self.outbox.remember((answer,)))
            self.metrics.fallback_answers.labels(
                community_id=entry.community_id, decision=decision
            ).inc()
            log.info(
                "兜底判定 fallback %s for event %s at %s",
                decision,
                scan["event_id"],
                entry.device_id,
            )
            verdicts.append(Verdict(event.event_serial, decision, "edge-fallback", reasons))  # type: ignore[arg-type]
            if late is not None:
                await self._check_disagreement(scan["event_id"], *late)
        if remembered:  # on disk before the device is told (one fsync for the whole group)
            await asyncio.gather(*remembered)
        return verdicts

    async def _callback(
        self,
        adapter: DeviceAdapter,
        parsed: ParsedRequest,
        entry: DeviceEntry,
        scans: Sequence[dict[str, Any]],
        futures: Sequence[asyncio.Future[tuple[str, tuple[str, ...]]]],
        deadline: float,
    ) -> None:
        verdicts = await self._verdicts(entry, scans, parsed.events, futures, deadline)
        if not entry.callback_url:
            log.warning("设备 %s 未登记回调地址 no callback_url: verdict not sent", entry.device_id)
            self.metrics.callbacks.labels(vendor=entry.vendor, outcome="no_url").inc()
            return
        for call in adapter.callbacks(parsed, verdicts):
            outcome = await self._send_call(
                entry, call.method, call.path, call.body, call.content_type
            )
            self.metrics.callbacks.labels(vendor=entry.vendor, outcome=outcome).inc()

    async def _send_call(
        self, entry: DeviceEntry, method: str, path: str, body: bytes, content_type: str
    ) -> str:
        assert self._session is not None and entry.callback_url is not None
        url = entry.callback_url.rstrip("/") + path
        headers = {"Content-Type": content_type}
        try:
            async with self._session.request(method, url, data=body, headers=headers) as resp:
                await resp.read()
                status, challenge = resp.status, resp.headers.get("WWW-Authenticate", "")
            if status == 401 and entry.callback_username and entry.callback_password:
                if challenge.lower().startswith("digest"):
                    headers["Authorization"] = digest_header(
                        challenge, method, path, entry.callback_username, entry.callback_password
                    )
                else:
                    token = f"{entry.callback_username}:{entry.callback_password}".encode()
                    headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
                async with self._session.request(method, url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
        except (aiohttp.ClientError, TimeoutError) as err:
            log.warning("回调失败 callback to %s failed: %s", entry.device_id, type(err).__name__)
            return "error"
        if status >= 300:
            log.warning("回调被拒 callback to %s answered HTTP %d", entry.device_id, status)
            return f"http_{status // 100}xx"
        return "sent"

    # --- dead letters and alerts ----------------------------------------------------------

    async def _dead_letter(self, vendor: str, err: MalformedRequest, body: bytes) -> None:
        digest = hashlib.sha256(body).hexdigest()
        source = f"edge.{vendor}"
        record = {
            "dead_letter_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"edge:{source}:{digest}")),
            "reason": f"edge_{err.reason}",
            "detail": err.detail,
            "source_topic": source,
            "source_partition": -1,
            "source_offset": -1,
            # redacted: the body may hold raw identifiers; its digest and length identify it
            "original": f"redacted sha256={digest} bytes={len(body)}".encode(),
            "created_at": int(time.time() * 1000),
        }
        topic, key = topic_and_key(self.settings.topics, "DeadLetter", record)
        row = OutRow(
            str(record["dead_letter_id"]),
            "DeadLetter",
            topic,
            key,
            self.codec.encode("DeadLetter", record),
        )
        with contextlib.suppress(Exception):
            await self.outbox.append([row])
            self._wake.set()

    async def _check_disagreement(
        self, event_id: str, decision: str, reasons: tuple[str, ...]
    ) -> None:
        answer = self._fallbacks.pop(event_id, None)
        if answer is None:
            return
        opens = decision in ("ALLOW", "WARN")
        if opens == (answer.decision in ("ALLOW", "WARN")):
            # settled: forgotten with the next group commit, not awaited (the decision follower
            # must not wait an fsync per decision); lost in a crash, it is settled again
            self.outbox.forget((event_id,))
            return
        from streams.rules.alerts import build_alert

        now = int(time.time() * 1000)
        alert = build_alert(
            alert_type=EDGE_ALERT,
            severity="WARNING",
            community_id=answer.community_id,
            cause=f"edge-fallback|{event_id}",
            source_event_ids=[event_id],
            event_time=answer.event_time,
            created_at=now,
            gate_id=answer.gate_id,
            device_id=answer.device_id,
            subject_id=answer.subject_id,
            details={
                "fallback_decision": answer.decision,
                "core_decision": decision,
                "core_reasons": ",".join(reasons) or "-",
                "fallback_reasons": ",".join(answer.reasons) or "-",
            },
        )
        zh = {"ALLOW": "放行", "WARN": "提醒", "RECHECK": "复测", "DENY": "拒绝"}
        alert["message_zh"] = (
            f"【边缘兜底判定与核心不一致】门岗 {answer.gate_id} 设备 {answer.device_id}："
            f"核心未及时答复时边缘按兜底策略{zh[answer.decision]}，核心判定为{zh[decision]}"
            f"（{','.join(reasons) or '-'}），请核查该次通行。"
        )
        alert["message_en"] = (
            f"[Edge fallback disagreed] Gate {answer.gate_id} device {answer.device_id}: the "
            f"edge answered {answer.decision} from its fallback policy when the core was late; "
            f"the core decided {decision} ({','.join(reasons) or '-'}). Review this pass."
        )
        topic, key = topic_and_key(self.settings.topics, "Alert", alert)
        row = OutRow(str(alert["alert_id"]), "Alert", topic, key, self.codec.encode("Alert", alert))
        await self.outbox.append([row], forget=(event_id,))  # the alert and the forget: one commit
        self._wake.set()
        self.metrics.disagreements.labels(community_id=answer.community_id).inc()
        log.warning(
            "兜底与核心不一致 fallback %s vs core %s for event %s",
            answer.decision,
            decision,
            event_id,
        )

    async def _on_decision(self, record: dict[str, Any]) -> None:
        event_id = record["event_id"]
        verdict = (record["decision"], tuple(record.get("reasons") or ()))
        self._decided[event_id] = verdict
        if len(self._decided) > DECIDED_CACHE:
            self._decided.popitem(last=False)
        for future in self._waiters.pop(event_id, ()):
            if not future.done():
                future.set_result(verdict)
        if event_id in self._fallbacks:
            await self._check_disagreement(event_id, *verdict)

    # --- Kafka ---------------------------------------------------------------------------

    def _kafka_kwargs(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.settings.kafka_bootstrap,
            **kafka_client_kwargs(self.settings, "aiokafka"),
        }

    async def _produce_forever(self) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        backoff = 0.2
        while True:
            producer = AIOKafkaProducer(
                **self._kafka_kwargs(),
                acks="all",
                # off only for a broker without InitProducerId (the embedded Tansu demo)
                enable_idempotence=self.settings.producer_idempotence,
                linger_ms=2,
                request_timeout_ms=self.config.kafka_request_timeout_ms,
            )
            try:
                await producer.start()
                self.kafka_connected.set()
                backoff = 0.2
                await self._drain(producer)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            except (KafkaError, OSError) as err:
                self.kafka_connected.clear()
                log.warning(
                    "Kafka 不可用，事件留在发件箱 Kafka unavailable (%s); outbox holds",
                    type(err).__name__,
                )
            with contextlib.suppress(Exception):
                await producer.stop()
            await asyncio.sleep(backoff)
            backoff = min(5.0, backoff * 2)

    async def _partitions_of(self, producer: Any, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            parts = await producer.partitions_for(topic)
            n = self._partitions[topic] = len(parts)
        return n

    async def _drain(self, producer: Any) -> None:
        while True:
            rows = await asyncio.to_thread(self.outbox.pending, 500)
            if not rows:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                continue
            futures = []
            for row in rows:
                n = await self._partitions_of(producer, row.topic)
                futures.append(
                    await producer.send(
                        row.topic, row.value, key=row.key, partition=partition_for(row.key, n)
                    )
                )
            await asyncio.gather(*futures)
            await asyncio.to_thread(self.outbox.mark_produced, [r.seq for r in rows])
            for row in rows:
                self.metrics.produced.labels(record=row.record).inc()

    async def _follow_decisions(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import KafkaError

        topic = self.settings.topics.gate_decisions
        while True:
            consumer = AIOKafkaConsumer(
                **self._kafka_kwargs(),
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_uncommitted",  # decisions are deterministic
                # fetch_min_bytes=1: the broker answers a fetch as soon as one decision is
                # there, so the wait costs no latency — it only bounds an empty poll (5 ms cost
                # the broker up to 0.29 of a core, 500 ms 0.04; docs/benchmark.md, Gate edge).
                # aiokafka sends a node's next fetch only once every partition's records were
                # taken (getmany drains them all) or after prefetch_backoff (100 ms); only then
                # can a partition wait for a fetch in flight without it, and such a fetch returns
                # with the next decision on any partition.
                fetch_max_wait_ms=500,
                fetch_min_bytes=1,
            )
            try:
                await consumer.start()
                parts = consumer.partitions_for_topic(topic)
                if not parts:
                    await consumer._client.force_metadata_update()
                    parts = consumer.partitions_for_topic(topic)
                if not parts:
                    raise KafkaError(f"topic {topic} not found")
                tps = [TopicPartition(topic, p) for p in sorted(parts)]
                consumer.assign(tps)
                await consumer.seek_to_end(*tps)
                if self._fallbacks:  # read back far enough to settle remembered fallbacks
                    since = min(a.answered_ms for a in self._fallbacks.values()) - 60_000
                    found = await consumer.offsets_for_times({tp: since for tp in tps})
                    for tp, ot in found.items():
                        if ot is not None:
                            consumer.seek(tp, ot.offset)
                for tp in tps:
                    await consumer.position(tp)
                self.decisions_following.set()
                while True:
                    batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                    for messages in batches.values():
                        for msg in messages:
                            if msg.value is None:
                                continue
                            try:
                                record = self.codec.decode("GateDecision", msg.value)
                            except InvalidEvent:
                                continue
                            await self._on_decision(record)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                raise
            except (KafkaError, OSError) as err:
                self.decisions_following.clear()
                log.warning(
                    "无法跟随判定 cannot follow decisions (%s); retrying", type(err).__name__
                )
            with contextlib.suppress(Exception):
                await consumer.stop()
            await asyncio.sleep(1.0)

    async def _follow_reference(self) -> None:
        from streams.reference import ReferenceStore

        while True:
            store = ReferenceStore(self.settings, self.codec, self._core_metrics)
            try:
                await store.start()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning(
                    "参考数据副本未就绪 reference replica not ready (%s); retrying",
                    type(err).__name__,
                )
                with contextlib.suppress(Exception):
                    await store.stop()
                await asyncio.sleep(2.0)
                continue
            self._reference = store
            return

    async def _housekeeping(self) -> None:
        last_prune = 0.0
        while True:
            depth, age = await asyncio.to_thread(self.outbox.depth_and_age)
            self.metrics.outbox_depth.set(depth)
            self.metrics.outbox_oldest_seconds.set(age)
            self._outbox_age = age
            if time.monotonic() - last_prune > 3600:
                await asyncio.to_thread(self.outbox.prune)
                last_prune = time.monotonic()
            now = time.monotonic()
            for device_id in [d for d, b in self._buckets.items() if now - b.last > 600]:
                del self._buckets[device_id]
            await asyncio.sleep(1.0)


def _bound_port(site: web.TCPSite) -> int:
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None)
    assert sockets
    return int(sockets[0].getsockname()[1])


async def run_edge(settings: Settings, config: EdgeConfig, *, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set (the CLI sets it on SIGTERM/SIGINT)."""
    register = Register.from_file(config.register_path, config.register_key)
    service = EdgeService(settings, config, register)
    await service.start()
    try:
        await stop.wait()
    finally:
        await service.stop()
