"""The one small interface every gate-device family implements (a pure module: no I/O).

An adapter is a translator, nothing more (STYLE.md lesson 16). It turns one native request of
its device family into a :class:`ParsedRequest` — who the device says it is and zero or more
:class:`NativeEvent` — and renders the family's native answer: :meth:`DeviceAdapter.answer`
for a request it parsed (with the verdicts for its events, if the device waits for them),
:meth:`DeviceAdapter.refuse` for one the edge will not take (unknown or unauthenticated device,
malformed payload, rate limit, the edge cannot store it).

Everything else is the edge service's, written once for all families: looking the device up in
the register and checking its credentials, pseudonymising identifiers, deriving event ids,
writing the outbox before answering, waiting for the decision on ``gate.decisions``, the
fallback policy, metrics. A new vendor is one module under ``fangxian/edge/adapters/`` with one
class satisfying :class:`DeviceAdapter`.

Raw identifiers: a :class:`NativeEvent` carries the identifier exactly as the device sent it
(``identifier``: an employee number, card number, plate, QR text, perhaps a raw ID number). It
never leaves the edge process: the service replaces it by a keyed-HMAC token before anything is
stored, logged or produced. Adapters therefore must not log payloads, and the ``detail`` of a
:class:`MalformedRequest` must not quote them (say *what* is wrong: "JSON part truncated at
byte 812", never the bytes).

How a device gets its verdict (``ParsedRequest.delivery``):

- ``"response"``: the device waits on the same HTTP request (plate cameras, QR readers, the
  generic JSON API). The service waits for the decisions (or the fallback), then returns
  ``answer(parsed, verdicts)``.
- ``"callback"``: the device is answered at once (``answer(parsed, ())``, an acknowledgement)
  and waits for a separate request from the platform (Hikvision remote verification:
  ``PUT /ISAPI/AccessControl/remoteCheck``). The service then sends each
  :class:`DeviceCall` from ``callbacks(parsed, verdicts)`` to the device.
- ``"none"``: the device decided locally and only reports; it is answered at once with
  ``answer(parsed, ())`` and nothing is sent back later.

Non-HTTP transports (MQTT) fit the same shape: the transport builds a :class:`DeviceRequest`
(``method="PUBLISH"``, ``path`` = the MQTT topic, ``body`` = the payload) and sends the
:class:`DeviceResponse` body (or the :class:`DeviceCall`) as the publish back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "Decision",
    "Delivery",
    "DeviceAdapter",
    "DeviceCall",
    "DeviceIdentity",
    "DeviceRequest",
    "DeviceResponse",
    "Direction",
    "IdentifierKind",
    "MalformedRequest",
    "NativeEvent",
    "ParsedRequest",
    "RefusalReason",
    "ScanMethod",
    "Verdict",
    "VerdictSource",
]

#: the contract's ``ScanMethod`` symbols an edge event can carry
ScanMethod = Literal["QR", "HEALTH_CODE", "FACE", "PLATE", "CARD", "MANUAL"]
#: the contract's ``Direction``
Direction = Literal["IN", "OUT"]
#: the contract's ``Decision``
Decision = Literal["ALLOW", "WARN", "RECHECK", "DENY"]
#: where a verdict came from: the decide stage's ``GateDecision`` or the edge's fallback policy
VerdictSource = Literal["core", "edge-fallback"]
#: how the device receives its verdict (see the module docstring)
Delivery = Literal["response", "callback", "none"]


class IdentifierKind(StrEnum):
    """What the raw ``identifier`` of a :class:`NativeEvent` is.

    The service turns each kind into a subject (see ``fangxian/edge/identity.py``):

    - ``EMPLOYEE_NO``: the person number on a terminal's own person list. Communities enrol
      residents under their pseudonymous token (docs/edge.md), so this normally *is* the
      resident token; an 18-character ID number found here is pseudonymised as one.
    - ``ID_NUMBER``: a raw resident ID number (GB 11643), e.g. from an ID-card reader.
    - ``CARD_NO``: an access card's number.
    - ``PLATE``: a vehicle plate as the camera read it.
    - ``QR``: the text of a scanned QR code (a resident or health code, a visitor pass).
    - ``OPAQUE``: anything else the device identifies a subject by; pseudonymised, never matched.
    """

    EMPLOYEE_NO = "employee_no"
    ID_NUMBER = "id_number"
    CARD_NO = "card_no"
    PLATE = "plate"
    QR = "qr"
    OPAQUE = "opaque"


class RefusalReason(StrEnum):
    """Why the edge refuses a request (the label of the refusal counters, too)."""

    UNKNOWN_DEVICE = "unknown_device"  # not in the register, or from the wrong source address
    UNAUTHENTICATED = "unauthenticated"  # missing or wrong HTTP auth / path secret
    MALFORMED = "malformed"  # the adapter could not parse it (a redacted dead letter is kept)
    RATE_LIMITED = "rate_limited"  # the device exceeded its request rate
    UNAVAILABLE = "unavailable"  # the edge cannot store the event durably; the device resends


@dataclass(frozen=True, slots=True)
class DeviceRequest:
    """One request as the device sent it, before anything is trusted.

    ``headers`` keys are lower-cased; ``query`` keeps the first value of each parameter;
    ``path`` is the URL path as received (``/ISAPI/...``, ``/iclock/cdata``); ``peer`` is the
    source IP address (no port). ``path_secret`` is the per-device secret the service took out
    of the URL path (``/d/<secret>/...``), if any — adapters need not look at it.
    """

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    peer: str = ""
    path_secret: str | None = None

    @property
    def content_type(self) -> str:
        """The media type, lower-cased, without parameters (``""`` when absent)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What the request says about which device sent it; any may be missing.

    The service looks the device up in the register by the first of these it has
    (``serial``, then ``mac``, then ``device_number``) and checks the source address too.
    """

    serial: str | None = None
    mac: str | None = None
    device_number: str | None = None

    def keys(self) -> tuple[str, ...]:
        """The non-empty identifiers, normalised (stripped, MAC lower-case with colons)."""
        out: list[str] = []
        if self.serial and self.serial.strip():
            out.append(self.serial.strip())
        if self.mac and self.mac.strip():
            out.append(normalise_mac(self.mac))
        if self.device_number and self.device_number.strip():
            out.append(self.device_number.strip())
        return tuple(out)


def normalise_mac(mac: str) -> str:
    """``AA-BB-CC-DD-EE-FF`` / ``aabbccddeeff`` → ``aa:bb:cc:dd:ee:ff`` (other text unchanged)."""
    hexdigits = "".join(c for c in mac.lower() if c in "0123456789abcdef")
    if len(hexdigits) == 12:
        return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))
    return mac.strip().lower()


@dataclass(frozen=True, slots=True)
class NativeEvent:
    """One pass/measurement the device reported, in the device's own terms.

    - ``event_serial``: the device's own number for this event (Hikvision ``serialNo``, a plate
      camera's ``plateid``, …). Together with the device serial it makes the contract
      ``event_id``, so a resend or an offline replay is one event. An adapter whose device has
      no serial builds one from what is stable across resends (e.g. the device time and code).
    - ``event_time_ms``: when the device saw it (UTC epoch ms), ``None`` if it did not say (the
      service uses the arrival time).
    - ``method``: the contract ``ScanMethod``.
    - ``identifier`` / ``identifier_kind``: RAW, as sent; ``None`` when the device saw nobody it
      could identify (a stranger's face, an unread plate).
    - ``temperature_c``: a reading in °C (adapters convert °F), ``None`` without one.
    - ``direction``: ``IN``/``OUT`` if the device says; else the register's direction applies.
    - ``health_code``: ``GREEN``/``YELLOW``/``RED`` if the device read one, else ``None``.
    - ``door``: the door/lane/channel number on the device, if any.
    - ``offline``: replayed from the device's offline backlog (no one waits at the gate).
    - ``per_person``: the serial alone does not tell two people apart (built from the device
      time, with no record number): the event id then also takes the person's pseudonym, so two
      people passing in the same second stay two events (never a raw identifier in the serial).
    """

    event_serial: str
    method: ScanMethod
    event_time_ms: int | None = None
    identifier: str | None = None
    identifier_kind: IdentifierKind | None = None
    temperature_c: float | None = None
    direction: Direction | None = None
    health_code: Literal["GREEN", "YELLOW", "RED"] | None = None
    door: str | None = None
    offline: bool = False
    per_person: bool = False

    def __repr__(self) -> str:  # never print the raw identifier
        return (
            f"NativeEvent(event_serial={self.event_serial!r}, method={self.method!r}, "
            f"identifier=<{'hidden' if self.identifier else 'none'}>, "
            f"temperature_c={self.temperature_c!r}, offline={self.offline!r})"
        )


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """What an adapter made of one request.

    ``events`` may be empty (a heartbeat, a handshake, a door-status report); the service then
    only answers. ``delivery`` says how a verdict reaches the device; ``timeout_ms`` is the
    device's own wait if the request says (else the register's). ``context`` is anything the
    adapter needs again in :meth:`DeviceAdapter.answer` (a ZKTeco table name, a request id) —
    never a raw identifier.
    """

    identity: DeviceIdentity
    events: tuple[NativeEvent, ...] = ()
    delivery: Delivery = "none"
    timeout_ms: int | None = None
    context: Mapping[str, str] = field(default_factory=dict)

    @property
    def awaits_verdict(self) -> bool:
        """The device waits for a verdict (in the response or by a callback)."""
        return self.delivery != "none" and bool(self.events)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The verdict for one event, as the service hands it to :meth:`DeviceAdapter.answer`.

    ``reasons`` are the contract alert types that fired (``FEVER_RECHECK``, ``HEALTH_CODE_RED``);
    ``message_zh`` / ``message_en`` a short text a device may show (optional).
    """

    event_serial: str
    decision: Decision
    source: VerdictSource = "core"
    reasons: tuple[str, ...] = ()
    message_zh: str = ""
    message_en: str = ""

    @property
    def opens(self) -> bool:
        """Whether the gate should open: ALLOW and WARN pass, RECHECK and DENY do not."""
        return self.decision in ("ALLOW", "WARN")


@dataclass(frozen=True, slots=True)
class DeviceResponse:
    """The native answer: HTTP status, headers (name, value), body bytes."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @classmethod
    def text(cls, body: str, status: int = 200) -> DeviceResponse:
        return cls(status, (("content-type", "text/plain; charset=utf-8"),), body.encode())

    @classmethod
    def json_bytes(cls, body: bytes, status: int = 200) -> DeviceResponse:
        return cls(status, (("content-type", "application/json; charset=utf-8"),), body)


@dataclass(frozen=True, slots=True)
class DeviceCall:
    """A request the platform sends *to* the device (a remote-verification answer).

    ``path`` includes the query string; the service adds the device's address (from the
    register), its credentials (HTTP Digest/Basic) and TLS as the register says.
    """

    method: str
    path: str
    body: bytes
    content_type: str = "application/json"


class MalformedRequest(ValueError):
    """The request cannot be parsed. ``reason`` is a short code (``bad_json``,
    ``truncated_multipart``, ``missing_field``); ``detail`` says what is wrong without quoting
    the payload (it goes to logs and a redacted dead letter)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@runtime_checkable
class DeviceAdapter(Protocol):
    """One device family. Implementations are pure and keep no per-request state.

    - ``vendor``: the family's name as the register and metrics spell it (``hikvision``).
    - ``path_prefixes``: URL paths this family's requests arrive on (``/iclock/`` for ZKTeco,
      whose path is fixed in firmware; ``/edge/hikvision/`` for families whose URL is set on
      the device). The service routes by the longest matching prefix.
    """

    vendor: str
    path_prefixes: tuple[str, ...]

    def parse(self, request: DeviceRequest) -> ParsedRequest:
        """The device identity and events in ``request``; raises :class:`MalformedRequest`."""
        ...

    def answer(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> DeviceResponse:
        """The native answer to a parsed request. ``verdicts`` holds one verdict per event when
        ``parsed.delivery == "response"``; it is empty for ``"none"`` and ``"callback"``
        (the acknowledgement)."""
        ...

    def callbacks(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> Sequence[DeviceCall]:
        """For ``delivery == "callback"``: the requests that carry the verdicts to the device.
        Families without callbacks return ``()``."""
        ...

    def refuse(self, reason: RefusalReason) -> DeviceResponse:
        """The family's native refusal (never a bare 500: e.g. ZKTeco wants plain text)."""
        ...
