"""Write the seed corpus under tests/fuzz/corpus/ from the contract's examples (run once; the
result is committed, so fuzz runs start from valid inputs and their near misses)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from schemas import Codec, contract

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"


def _write(directory: Path, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def codec_corpus() -> None:
    codec = Codec()
    for index, name in enumerate(codec.record_names):
        for example in contract.examples(name):
            payload = codec.encode(name, example)
            _write(CORPUS / "codec", bytes([index]) + payload)
            _write(CORPUS / "codec", bytes([index]) + payload[:-3])  # truncated


LOADER_KINDS = ("residents", "passes", "vehicles", "rules")


def loader_corpus() -> None:
    examples = HERE.parents[1] / "docs" / "examples"
    for index, kind in enumerate(LOADER_KINDS):
        if kind == "rules":
            sources = [
                json.dumps(e, ensure_ascii=False).encode()
                for e in contract.examples("CommunityRules")
            ]
        else:
            sources = [(examples / f"{kind}-example.csv").read_bytes()]
        for source in sources:
            _write(CORPUS / "loaders", bytes([index]) + source)
            _write(CORPUS / "loaders", bytes([index]) + source.decode("utf-8").encode("gb18030"))


def edge_corpus() -> None:
    """Seeds for the edge adapter harnesses: each family's native requests as the fakes in
    infra/ send them (first byte: the request variant of the harness), and near misses."""
    from datetime import datetime

    from infra.fake_dahua import FakeDahuaTerminal
    from infra.fake_zkteco import FakeZkTerminal

    dahua = FakeDahuaTerminal("http://edge", "8E0A5C1PAJ00042")
    dahua.swipe(user_id="R7f3c9a2b", temperature_c=36.6, utc=1796550000)
    dahua.swipe(card_no="A1B2C3D4", method=1, entry=False, utc=1796550060)
    lf = FakeDahuaTerminal("http://edge", "8E0A5C1PAJ00042", line_end="\n", with_snapshot=False)
    lf.swipe(user_id="R7f3c9a2b", utc=1796550120)
    bodies = [dahua.body_of(r) for r in dahua.stored] + [lf.body_of(r) for r in lf.stored]
    frames = [b.split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0] for b in bodies[:2]]
    events_json = json.dumps(
        {"Events": [{"Code": "AccessControl", "Action": "Pulse", "Data": dahua.stored[0].data}]}
    ).encode()
    for body in bodies:
        _write(CORPUS / "edge_dahua", bytes([0]) + body)
        _write(CORPUS / "edge_dahua", bytes([5]) + body)  # no Content-Type
        _write(CORPUS / "edge_dahua", bytes([0]) + body[: len(body) // 2])  # cut short
    for frame in frames:
        _write(CORPUS / "edge_dahua", bytes([3 | 0x80]) + frame + b"\r\n" + frame)
    _write(CORPUS / "edge_dahua", bytes([4]) + events_json)
    _write(CORPUS / "edge_dahua", bytes([3]) + b"Heartbeat")

    attlog = FakeZkTerminal("http://edge", "CQZ7231260012")
    attlog.punch("R51d0c2e7", datetime(2026, 12, 7, 8, 15, 2))
    attlog.punch("R51d0c2e7", datetime(2026, 12, 7, 18, 1, 40), status=1, verify=2)
    rtlog = FakeZkTerminal("http://edge", "CQZ7231260012", table="rtlog")
    rtlog.punch("R51d0c2e7", datetime(2026, 12, 7, 8, 20, 11), temperature_c=36.7)
    rtlog.punch("0", datetime(2026, 12, 7, 8, 21, 0), card="0012345678", status=1, verify=4)
    attlog_body = "\n".join(attlog.stored).encode() + b"\n"
    rtlog_body = "\n".join(rtlog.stored).encode() + b"\n"
    _write(CORPUS / "edge_zkteco", bytes([0]))
    _write(CORPUS / "edge_zkteco", bytes([1]) + attlog_body)
    _write(CORPUS / "edge_zkteco", bytes([1]) + attlog_body.replace(b"\n", b"\r\n"))
    _write(CORPUS / "edge_zkteco", bytes([1]) + rtlog_body)  # key=value lines on ATTLOG
    _write(CORPUS / "edge_zkteco", bytes([2]) + rtlog_body)
    _write(CORPUS / "edge_zkteco", bytes([3]) + b"USER PIN=1\tName=x\n")
    _write(CORPUS / "edge_zkteco", bytes([4]))
    _write(CORPUS / "edge_zkteco", bytes([5]) + b"ID=7&Return=0&CMD=INFO\n")
    _write(CORPUS / "edge_zkteco", bytes([6]) + b"DeviceType=acc,~DeviceName=SpeedFace")

    passes: list[dict[str, object]] = [
        {"seq": 1024, "ts": 1796550000123, "method": "CARD", "id": "C0FFEE5678", "wait_ms": 1500},
        {"seq": "f-77", "ts": "2026-12-07T08:00:00+08:00", "method": "QR", "id": "FX1V:12"},
        {"seq": 9, "method": "FACE", "temperature_c": 38.1, "direction": "IN", "door": "1"},
        {"seq": 10, "method": "FACE", "id": "R1", "id_kind": "employee_no", "offline": True},
        {"events": [{"seq": 1, "method": "CARD", "id": "x"}, {"seq": 2, "method": "MANUAL"}]},
    ]
    for payload in passes:
        _write(CORPUS / "edge_mqtt", bytes([0]) + json.dumps(payload).encode())
    _write(CORPUS / "edge_mqtt", bytes([1]) + json.dumps(passes[0]).encode())

    http_device_corpus()


def http_device_corpus() -> None:
    """Seeds for the Hikvision, plate-camera, QR-reader and generic-API harnesses, from the
    payloads infra/fake_devices.py sends (first byte: the harness's request variant)."""
    from infra.fake_devices import hikvision_event, hikvision_push, plate_alarm, qr_form

    events = [
        hikvision_event(serial_no=101, employee_no="R7f3c9a2b", temperature_c=36.5),
        hikvision_event(serial_no=102, card_no="A1B2C3D4", remote_check=True),
        hikvision_event(serial_no=103, qr="FX1V:53110105MEA0000013:R7f3c9a2b", temperature_c=99.1),
        hikvision_event(serial_no=104, employee_no="R1", date_time="2026-12-07T08:00:00"),
    ]
    events[3]["AccessControllerEvent"]["thermometryUnit"] = "fahrenheit"
    events[3]["AccessControllerEvent"]["currTemperature"] = 99.1
    heartbeat = {"ipAddress": "127.0.0.1", "eventType": "heartBeat", "dateTime": "2026-12-07"}
    for event in events:
        body, _ = hikvision_push(event)
        _write(CORPUS / "edge_hikvision", bytes([0]) + body)
        _write(CORPUS / "edge_hikvision", bytes([4]) + body)  # no Content-Type: sniffed
        _write(CORPUS / "edge_hikvision", bytes([0]) + body[: len(body) // 3])  # cut short
        plain, _ = hikvision_push(event, with_image=False)
        _write(CORPUS / "edge_hikvision", bytes([0]) + plain.replace(b"\r\n", b"\n"))
        _write(CORPUS / "edge_hikvision", bytes([3]) + json.dumps(event).encode())
    _write(CORPUS / "edge_hikvision", bytes([3]) + json.dumps(heartbeat).encode())

    alarms = [
        plate_alarm(serialno="VZ-88a1", licence="京A12345", plate_id=7),
        plate_alarm(serialno="VZ-88a1", licence="_无_", plate_id=8, offline=True),
        plate_alarm(serialno="VZ-88a1", licence="沪B7Q2M1", plate_id=9, truncate=True),
    ]
    for alarm in alarms:
        _write(CORPUS / "edge_plate", bytes([0]) + alarm)
        _write(CORPUS / "edge_plate", bytes([1]) + alarm.decode().encode("gb18030"))
    _write(CORPUS / "edge_plate", bytes([0]) + b'{"heartbeat": {"serialno": "VZ-88a1"}}')

    forms = [
        qr_form("FX1V:53110105MEA0000013:R7f3c9a2b", "QR-0007"),
        qr_form("https://hc.example/c?x=1&y=2", "QR-0007"),
        qr_form("", "QR-0007"),
        "vgdecoderesult=健康码&devicenumber=12".encode(),
    ]
    for form in forms:
        _write(CORPUS / "edge_qr", bytes([0]) + form)
        _write(CORPUS / "edge_qr", bytes([1]) + form.decode().encode("gb18030"))
    _write(CORPUS / "edge_qr", bytes([0x80]) + b"vgdecoderesult=FX1V%3A1&devicenumber=QR-1")

    scans: list[dict[str, object]] = [
        {"device_id": "GEN-0001", "event_serial": "s-1", "method": "QR", "identifier": "FX1V:1"},
        {
            "event_serial": "s-2",
            "method": "FACE",
            "event_time": "2026-12-07T08:00:00+08:00",
            "identifier": "R7f3c9a2b",
            "identifier_kind": "employee_no",
            "temperature_c": 37.9,
            "direction": "IN",
            "health_code": "GREEN",
        },
        {"event_serial": "s-3", "method": "PLATE", "identifier": "京A12345", "wait": False},
        {
            "device_id": "GEN-0001",
            "scans": [
                {"event_serial": "s-4", "method": "CARD", "event_time": 1796550000123},
                {"event_serial": 5, "method": "MANUAL", "direction": "OUT"},
            ],
        },
    ]
    for scan in scans:
        _write(CORPUS / "edge_generic", bytes([0]) + json.dumps(scan, ensure_ascii=False).encode())
    _write(CORPUS / "edge_generic", bytes([2]) + json.dumps(scans[1]).encode())


def main() -> None:
    codec_corpus()
    loader_corpus()
    edge_corpus()


if __name__ == "__main__":
    main()
