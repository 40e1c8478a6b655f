"""The device register: which gate devices may talk to the edge, and how each one answers.

A community's register is a CSV (UTF-8 or GB18030; Chinese or English headers) loaded with
``fangxian load devices FILE.csv``: every row is validated with its line number, credentials are
sealed (AES-256-GCM, key ``FANGXIAN_EDGE_REGISTER_KEY``, associated data = the device id, so a
sealed secret copied onto another device does not open) and the register is written as one JSON
file (``FANGXIAN_EDGE_REGISTER``) the edge reads at start. Nothing in the file is a clear
credential; the edge unseals them into memory only.

Columns (``*`` required): ``device_id``\\* 设备编号, ``vendor``\\* 厂商 (hikvision, plate, qr,
generic, dahua, zkteco, mqtt), ``serial`` 序列号, ``mac`` MAC地址, ``device_number`` 设备号,
``community_id``\\* 社区代码, ``gate_id``\\* 出入口, ``direction``\\* 方向 (IN/OUT), ``measures``
测量 (``temperature;face;card;qr;plate``), ``answers`` 应答 (``wait`` or ``report``),
``timeout_ms`` 超时毫秒 (default 1000), ``addresses`` 来源地址 (IPs or CIDRs, ``;``-separated;
empty = any), ``auth`` 认证 (digest, basic, path, none), ``username`` 用户名, ``password`` 密码 (the
HTTP password or the path secret), ``callback_url`` 回调地址 (the terminal's own ISAPI address for
remote verification, e.g. ``http://10.0.3.21:80``), ``callback_username`` / ``callback_password``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fangxian.core.codes import credit_code_check_ok
from fangxian.edge.adapter import DeviceIdentity, normalise_mac

VENDORS = ("hikvision", "plate", "qr", "generic", "dahua", "zkteco", "mqtt")
AUTHS = ("digest", "basic", "path", "none")
MEASURES = ("temperature", "face", "card", "qr", "plate")
REGISTER_VERSION = 1

COLUMNS: dict[str, tuple[str, ...]] = {
    "device_id": ("device_id", "设备编号", "设备ID"),
    "vendor": ("vendor", "厂商", "品牌"),
    "serial": ("serial", "序列号"),
    "mac": ("mac", "MAC地址", "mac地址"),
    "device_number": ("device_number", "设备号"),
    "community_id": ("community_id", "社区代码", "社区统一社会信用代码"),
    "gate_id": ("gate_id", "出入口", "门岗"),
    "direction": ("direction", "方向"),
    "measures": ("measures", "测量"),
    "answers": ("answers", "应答"),
    "timeout_ms": ("timeout_ms", "超时毫秒"),
    "addresses": ("addresses", "来源地址"),
    "auth": ("auth", "认证"),
    "username": ("username", "用户名"),
    "password": ("password", "密码"),
    "callback_url": ("callback_url", "回调地址"),
    "callback_username": ("callback_username", "回调用户名"),
    "callback_password": ("callback_password", "回调密码"),
}
_DIRECTIONS = {"IN": "IN", "OUT": "OUT", "进": "IN", "入": "IN", "出": "OUT"}
_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


class RegisterError(ValueError):
    """The register file cannot be used (wrong key, wrong version, unreadable)."""

    def __init__(self, message_zh: str, message_en: str) -> None:
        super().__init__(f"{message_zh} / {message_en}")
        self.message_zh = message_zh
        self.message_en = message_en


@dataclass(frozen=True)
class Problem:
    line: int
    field: str
    message_zh: str
    message_en: str


@dataclass
class DeviceLoad:
    """What ``load_devices`` made of a CSV: records to write, problems with line numbers."""

    records: list[dict[str, Any]] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


class SecretBox:
    """Seals device credentials: ``key_id`` + NUL + 12-byte nonce + AES-256-GCM ciphertext."""

    def __init__(self, key_text: str, key_id: str = "k1") -> None:
        if not key_text:
            raise RegisterError(
                "未设置 FANGXIAN_EDGE_REGISTER_KEY：设备凭据用它加密",
                "FANGXIAN_EDGE_REGISTER_KEY is not set: device credentials are sealed with it",
            )
        self._aead = AESGCM(hashlib.sha256(key_text.encode()).digest())
        self.key_id = key_id

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id!r})"

    def seal(self, secret: str, device_id: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), device_id.encode())
        return (self.key_id.encode() + b"\x00" + nonce + sealed).hex()

    def open(self, sealed_hex: str, device_id: str) -> str:
        blob = bytes.fromhex(sealed_hex)
        _, _, rest = blob.partition(b"\x00")
        try:
            return self._aead.decrypt(rest[:12], rest[12:], device_id.encode()).decode()
        except InvalidTag as err:
            raise RegisterError(
                f"设备 {device_id} 的凭据无法解密（密钥不对或文件被改动）",
                f"device {device_id}: its credentials do not decrypt (wrong key or tampered)",
            ) from err


@dataclass(frozen=True)
class DeviceEntry:
    """One registered device, credentials in memory (never printed: see ``__repr__``)."""

    device_id: str
    vendor: str
    community_id: str
    gate_id: str
    direction: str
    serial: str | None = None
    mac: str | None = None
    device_number: str | None = None
    measures: frozenset[str] = frozenset()
    waits: bool = True
    timeout_ms: int = 1000
    addresses: tuple[str, ...] = ()
    auth: str = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    callback_url: str | None = None
    callback_username: str | None = None
    callback_password: str | None = field(default=None, repr=False)

    def identity_keys(self) -> tuple[str, ...]:
        return DeviceIdentity(self.serial, self.mac, self.device_number).keys() or (self.device_id,)

    def address_allowed(self, peer: str) -> bool:
        if not self.addresses:
            return True
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(a, strict=False) for a in self.addresses)


class Register:
    """Lookups by device identity (serial, MAC, device number) within a vendor, and by id."""

    def __init__(self, entries: Iterable[DeviceEntry]) -> None:
        self.entries: dict[str, DeviceEntry] = {}
        self._by_key: dict[tuple[str, str], DeviceEntry] = {}
        for entry in entries:
            self.entries[entry.device_id] = entry
            for key in (*entry.identity_keys(), entry.device_id):
                self._by_key[(entry.vendor, key)] = entry

    def __len__(self) -> int:
        return len(self.entries)

    def find(self, vendor: str, identity: DeviceIdentity, peer: str) -> DeviceEntry | None:
        """The entry for what the request says it is; for a request that says nothing (a
        heartbeat), the only device of this vendor at that source address."""
        for key in identity.keys():  # noqa: SIM118
            entry = self._by_key.get((vendor, key))
            if entry is not None:
                return entry
        if identity.keys():
            return None
        candidates = [
            e
            for e in self.entries.values()
            if e.vendor == vendor and e.addresses and e.address_allowed(peer)
        ]
        return candidates[0] if len(candidates) == 1 else None

    @classmethod
    def from_file(cls, path: str | Path, key_text: str) -> Register:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise RegisterError(
                f"设备登记文件无法读取：{path}", f"cannot read register {path}"
            ) from err
        if data.get("version") != REGISTER_VERSION:
            raise RegisterError("设备登记文件版本不对", "register file version mismatch")
        box = (
            SecretBox(key_text)
            if any(d.get("password") or d.get("callback_password") for d in data["devices"])
            else None
        )
        return cls(_entry(d, box) for d in data["devices"])


def _entry(d: Mapping[str, Any], box: SecretBox | None) -> DeviceEntry:
    def unseal(name: str) -> str | None:
        value = d.get(name)
        if not value:
            return None
        assert box is not None
        return box.open(value, d["device_id"])

    return DeviceEntry(
        device_id=d["device_id"],
        vendor=d["vendor"],
        community_id=d["community_id"],
        gate_id=d["gate_id"],
        direction=d["direction"],
        serial=d.get("serial"),
        mac=d.get("mac"),
        device_number=d.get("device_number"),
        measures=frozenset(d.get("measures", ())),
        waits=bool(d.get("waits", True)),
        timeout_ms=int(d.get("timeout_ms", 1000)),
        addresses=tuple(d.get("addresses", ())),
        auth=d.get("auth", "none"),
        username=d.get("username"),
        password=unseal("password"),
        callback_url=d.get("callback_url"),
        callback_username=d.get("callback_username"),
        callback_password=unseal("callback_password"),
    )


def _read(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030")


def _rows(text: str, result: DeviceLoad) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        result.errors.append(Problem(1, "*", "文件为空", "empty file"))
        return
    names: dict[int, str] = {}
    for i, raw in enumerate(header):
        key = raw.strip().lower()
        for canonical, spellings in COLUMNS.items():
            if key in (s.lower() for s in spellings):
                names[i] = canonical
    for required in ("device_id", "vendor", "community_id", "gate_id", "direction"):
        if required not in names.values():
            result.errors.append(
                Problem(1, required, f"缺少列 {COLUMNS[required][1]}", f"missing column {required}")
            )
    if result.errors:
        return
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        yield line, {names[i]: cell.strip() for i, cell in enumerate(row) if i in names}


def load_devices(path: str | Path, box: SecretBox | None) -> DeviceLoad:
    """Validate a register CSV; seal its credentials with ``box`` (required if any row has
    one). A row with a problem is rejected whole, with its line number."""
    result = DeviceLoad()
    seen: dict[str, int] = {}
    seen_keys: dict[tuple[str, str], int] = {}
    for line, v in _rows(_read(Path(path)), result):
        problems: list[tuple[str, str, str]] = []

        def bad(
            name: str, zh: str, en: str, problems: list[tuple[str, str, str]] = problems
        ) -> None:
            problems.append((name, zh, en))

        device_id = v.get("device_id", "")
        if not _ID.match(device_id):
            bad("device_id", "设备编号须为 1-64 位字母数字", "device_id: 1-64 letters/digits/-_.:")
        elif device_id in seen:
            bad("device_id", f"与第{seen[device_id]}行重复", f"duplicate of line {seen[device_id]}")
        vendor = v.get("vendor", "").lower()
        if vendor not in VENDORS:
            bad("vendor", f"厂商须为 {'/'.join(VENDORS)}", f"vendor must be one of {VENDORS}")
        community = v.get("community_id", "").upper()
        if not credit_code_check_ok(community):
            bad("community_id", "社区代码不是有效的统一社会信用代码", "not a valid credit code")
        if not v.get("gate_id"):
            bad("gate_id", "缺少出入口", "gate_id is empty")
        direction = _DIRECTIONS.get(v.get("direction", "").upper())
        if direction is None:
            bad("direction", "方向须为 IN/OUT（进/出）", "direction must be IN or OUT")
        measures = [m.strip().lower() for m in re.split(r"[;,，；]", v.get("measures", "")) if m]
        if any(m not in MEASURES for m in measures):
            bad("measures", f"测量项须为 {'/'.join(MEASURES)}", f"measures must be from {MEASURES}")
        answers = (v.get("answers") or "wait").lower()
        if answers not in ("wait", "report", "等待", "上报"):
            bad("answers", "应答须为 wait 或 report", "answers must be wait or report")
        try:
            timeout_ms = int(v.get("timeout_ms") or 1000)
            if not 50 <= timeout_ms <= 30_000:
                raise ValueError
        except ValueError:
            bad("timeout_ms", "超时须为 50-30000 毫秒", "timeout_ms must be 50..30000")
            timeout_ms = 1000
        addresses = [a.strip() for a in re.split(r"[;,]", v.get("addresses", "")) if a.strip()]
        for a in addresses:
            try:
                ipaddress.ip_network(a, strict=False)
            except ValueError:
                bad("addresses", "来源地址不是 IP 或网段", "addresses: not an IP or CIDR")
        auth = (v.get("auth") or "none").lower()
        if auth not in AUTHS:
            bad("auth", f"认证须为 {'/'.join(AUTHS)}", f"auth must be one of {AUTHS}")
        if auth in ("digest", "basic") and not (v.get("username") and v.get("password")):
            bad("password", "该认证方式需要用户名和密码", "this auth needs username and password")
        if auth == "path" and len(v.get("password", "")) < 16:
            bad("password", "路径密钥至少 16 个字符", "a path secret needs 16+ characters")
        if auth == "none" and not addresses:
            bad("auth", "无认证的设备必须限定来源地址", "a device without auth needs addresses")
        mac = normalise_mac(v["mac"]) if v.get("mac") else None
        for key in DeviceIdentity(v.get("serial"), mac, v.get("device_number")).keys():  # noqa: SIM118
            if (vendor, key) in seen_keys:
                bad(
                    "serial",
                    f"设备标识与第{seen_keys[(vendor, key)]}行重复",
                    f"identity duplicates line {seen_keys[(vendor, key)]}",
                )
        needs_secret = bool(v.get("password") or v.get("callback_password"))
        if needs_secret and box is None:
            bad(
                "password",
                "需要 FANGXIAN_EDGE_REGISTER_KEY 才能加密凭据",
                "FANGXIAN_EDGE_REGISTER_KEY is needed to seal credentials",
            )
        if problems:
            for name, zh, en in problems:
                result.errors.append(Problem(line, name, zh, en))
            continue
        seen[device_id] = line
        for key in DeviceIdentity(v.get("serial"), mac, v.get("device_number")).keys():  # noqa: SIM118
            seen_keys[(vendor, key)] = line
        record: dict[str, Any] = {
            "device_id": device_id,
            "vendor": vendor,
            "serial": v.get("serial") or None,
            "mac": mac,
            "device_number": v.get("device_number") or None,
            "community_id": community,
            "gate_id": v["gate_id"],
            "direction": direction,
            "measures": sorted(set(measures)),
            "waits": answers in ("wait", "等待"),
            "timeout_ms": timeout_ms,
            "addresses": addresses,
            "auth": auth,
            "username": v.get("username") or None,
            "callback_url": v.get("callback_url") or None,
            "callback_username": v.get("callback_username") or None,
        }
        for name in ("password", "callback_password"):
            if v.get(name):
                assert box is not None
                record[name] = box.seal(v[name], device_id)
        result.records.append(record)
    return result


def write_register(records: list[dict[str, Any]], path: str | Path) -> None:
    """Write the sealed register atomically (a reader never sees half a file)."""
    target = Path(path)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(
        json.dumps({"version": REGISTER_VERSION, "devices": records}, ensure_ascii=False, indent=1),
        encoding="utf-8",
    )
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    tmp.replace(target)
