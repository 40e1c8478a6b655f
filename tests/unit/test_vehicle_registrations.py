"""A plate registered in two communities holds in both (issue 20, behaviour 9).

A vehicle's token is the same in every community (``token("plate", plate)``: the camera at any
gate reads the same plate), and registrations were keyed by it alone: a plate registered in two
communities kept only the later registration on the compacted topic and in every lookup.
Registrations are now keyed by (community, plate token) (``schemas.topics.vehicle_key``) — on
``reference.vehicles``, in the loader's duplicate check, in the worker's reference store, in
the engine and in the edge's fallback — so each community's registration is replaced, expires
and is deleted on its own.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fangxian.core.metrics import Metrics
from fangxian.core.privacy import Pseudonymiser
from fangxian.core.settings import Settings
from fangxian.edge.fallback import FallbackPolicy, Replica, fallback_decision
from fangxian.ingest.reference_csv import load_vehicles
from schemas import Codec
from schemas.topics import record_key, vehicle_key
from streams.engine import RuleEngine
from streams.reference import ReferenceStore

A = "55350102MA2Y0001XX"  # synthetic, valid GB 32100 codes
B = "55110105MA01N002XF"
T0 = 1_700_000_000_000
DAY = 86_400_000
PSEUDONYMISER = Pseudonymiser(b"unit-test-key")
PLATE = PSEUDONYMISER.token("plate", "闽AD12345")
CODEC = Codec()
SETTINGS = Settings()


def vehicle(community: str, valid_until: int | None = None) -> dict[str, Any]:
    return {
        "vehicle_id": PLATE,
        "community_id": community,
        "owner_resident_id": None,
        "valid_until": valid_until,
        "updated_at": T0,
    }


Op = Callable[[ReferenceStore], None]


def put(community: str, valid_until: int | None = None) -> Op:
    """A registration as ``fangxian load vehicles`` produces it (key from the contract)."""
    record = vehicle(community, valid_until)

    def op(store: ReferenceStore) -> None:
        key = record_key("Vehicle", record)
        store.apply(SETTINGS.topics.vehicles, key, CODEC.encode("Vehicle", record))

    return op


def delete(community: str) -> Op:
    """A tombstone of one community's registration."""

    def op(store: ReferenceStore) -> None:
        store.apply(SETTINGS.topics.vehicles, vehicle_key(community, PLATE).encode(), None)

    return op


def legacy_put(community: str) -> Op:
    """A record produced before issue 20: keyed by the plate token alone."""
    record = vehicle(community)

    def op(store: ReferenceStore) -> None:
        store.apply(SETTINGS.topics.vehicles, PLATE.encode(), CODEC.encode("Vehicle", record))

    return op


def scan(community: str, direction: str = "IN") -> dict[str, Any]:
    return {
        "event_id": f"car-{community}-{direction}",
        "community_id": community,
        "gate_id": "G-car",
        "device_id": "CAM-1",
        "direction": direction,
        "subject_type": "VEHICLE",
        "subject_id": PLATE,
        "household_id": None,
        "method": "PLATE",
        "health_code": None,
        "face_consent": False,
        "temperature_c": None,
        "event_time": T0,
    }


@pytest.mark.parametrize(
    ("ops", "in_a", "in_b"),
    [
        pytest.param([put(A)], "ALLOW", "DENY", id="registered in A only"),
        pytest.param([put(A), put(B)], "ALLOW", "ALLOW", id="A then B: both hold"),
        pytest.param([put(B), put(A)], "ALLOW", "ALLOW", id="B then A: both hold"),
        pytest.param([put(A), put(B), delete(A)], "DENY", "ALLOW", id="both, A's deleted"),
        pytest.param([put(A), put(B), delete(B)], "ALLOW", "DENY", id="both, B's deleted"),
        pytest.param([put(A), put(B), delete(A), delete(B)], "DENY", "DENY", id="both deleted"),
        pytest.param(
            [put(A), put(B), put(A, valid_until=T0 - DAY)],
            "DENY",
            "ALLOW",
            id="both, A's replaced by an expired one",
        ),
        pytest.param(
            [put(A), put(B), delete(A), put(A)], "ALLOW", "ALLOW", id="A deleted, registered again"
        ),
        pytest.param(
            [legacy_put(A)], "DENY", "DENY", id="keyed by the plate alone (before): ignored"
        ),
    ],
)
def test_a_plate_registered_in_two_communities(ops: list[Op], in_a: str, in_b: str) -> None:
    """Through the worker's reference store (as read from ``reference.vehicles``) into the
    engine, and the edge's fallback over the same records: both decide alike."""
    engine = RuleEngine()
    store = ReferenceStore(
        SETTINGS, CODEC, Metrics.create(CollectorRegistry()), engine.on_reference_update
    )
    engine.bind_reference(vehicles=store.records["vehicles"])
    for op in ops:
        op(store)
    replica = Replica({}, store.records["vehicles"], {}, {})
    for community, want in ((A, in_a), (B, in_b)):
        ev = scan(community)
        assert engine.on_scans([ev]).decisions[0]["decision"] == want, community
        registered = vehicle_key(community, PLATE) in store.records["vehicles"]
        # the fallback knows registrations, not their validity (docs/edge.md)
        edge = "ALLOW" if registered else "DENY"
        assert fallback_decision(ev, replica, FallbackPolicy())[0] == edge, community
        assert want == "DENY" or registered


@pytest.mark.parametrize(
    ("ops", "in_a", "in_b"),
    [
        pytest.param(["A", "B"], "ALLOW", "ALLOW", id="A then B"),
        pytest.param(["A", "B", "-A"], "DENY", "ALLOW", id="A's deleted"),
        pytest.param(["B", "A", "-B"], "ALLOW", "DENY", id="B's deleted"),
    ],
)
def test_engine_upsert_and_delete_by_community(ops: list[str], in_a: str, in_b: str) -> None:
    """The engine's own mapping (no store): ``delete_vehicle`` takes the registration's key."""
    engine = RuleEngine()
    for op in ops:
        if op.startswith("-"):
            engine.on_reference_update(
                "vehicles", vehicle_key({"A": A, "B": B}[op[1]], PLATE), None
            )
        else:
            engine.upsert_vehicle(vehicle({"A": A, "B": B}[op]))
    for community, want in ((A, in_a), (B, in_b)):
        assert engine.on_scans([scan(community)]).decisions[0]["decision"] == want


def test_the_loader_keeps_one_plate_in_two_communities_and_refuses_a_repeat_in_one() -> None:
    text = f"plate,community_id\n闽AD12345,{A}\n闽AD12345,{B}\n闽A·D12345,{A}\n"
    result = load_vehicles(io.StringIO(text), PSEUDONYMISER, updated_at_ms=1)
    assert [(r["community_id"], r["vehicle_id"]) for r in result.records] == [
        (A, PLATE),
        (B, PLATE),
    ]
    assert [(e.line, e.field) for e in result.errors] == [(4, "vehicle_id")]
    keys = {record_key("Vehicle", r) for r in result.records}
    assert keys == {f"{A}|{PLATE}".encode(), f"{B}|{PLATE}".encode()}
