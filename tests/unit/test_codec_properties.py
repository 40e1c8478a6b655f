"""Property tests of the codec (hypothesis): every record the contract allows round-trips, and
no mutation of a message's bytes gets anything but ``InvalidEvent`` or a contract record out
of ``decode``.

Records are drawn field by field from the schema: each field takes the value of one of the
contract's examples or a random value of its Avro type; what ``encode`` accepts is a record the
contract allows (the schema and the value checks both pass), the rest is discarded.

Why not "a mutation decodes identically or is refused": Avro carries no checksum, so flipping a
bit inside a long or a string can give another valid record. What the contract can promise, and
what is asserted, is that a mutated message is either refused with ``InvalidEvent`` (dead
letter) or decodes to a record that itself passes validation and round-trips — never a crash,
never a half-checked value.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from schemas import Codec, InvalidEvent, contract

CODEC = Codec()
NAMES = list(CODEC.record_names)
PROFILE = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)


def _named_types(schema: Any, found: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, found)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("enum", "record", "fixed"):
            namespace = schema.get("namespace", "fangxian.v1")
            found[schema["name"]] = schema
            found[f"{namespace}.{schema['name']}"] = schema
        for field in schema.get("fields", []):
            _named_types(field["type"], found)
        for key in ("type", "items", "values"):
            if isinstance(schema.get(key), dict | list):
                _named_types(schema[key], found)
    return found


def _value(schema: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Any value of an Avro type (logical types are plain ints to the codec)."""
    if isinstance(schema, list):
        return st.one_of([_value(branch, named) for branch in schema])
    if isinstance(schema, str):
        if schema in named:
            return _value(named[schema], named)
        return {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "float": st.floats(width=32),
            "double": st.floats(allow_nan=True, allow_infinity=True),
            "string": st.text(max_size=40),
            "bytes": st.binary(max_size=40),
        }[schema]
    kind = schema["type"]
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(_value(schema["items"], named), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(max_size=10), _value(schema["values"], named), max_size=3)
    if kind == "record":
        return st.fixed_dictionaries(
            {f["name"]: _value(f["type"], named) for f in schema["fields"]}
        )
    return _value(kind, named)


@st.composite
def contract_records(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(NAMES))
    schema = contract.schema(name)
    named = _named_types(schema, {})
    examples = contract.examples(name)
    record = {}
    for field in schema["fields"]:
        from_example = st.sampled_from([e[field["name"]] for e in examples if field["name"] in e])
        random = _value(field["type"], named)
        # mostly example values: a record of all-random fields almost never passes the checks
        use_random = not examples or draw(st.integers(0, 5)) == 0
        record[field["name"]] = draw(random if use_random else from_example)
    try:
        CODEC.encode(name, record)
    except InvalidEvent:
        assume(False)
    return name, record


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@PROFILE
@given(contract_records())
def test_every_allowed_record_round_trips(named_record: tuple[str, dict[str, Any]]) -> None:
    name, record = named_record
    payload = CODEC.encode(name, record)
    decoded = CODEC.decode(name, payload)
    assert _same(decoded, record)
    assert CODEC.encode(name, decoded) == payload


MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("append"), st.just(0), st.integers(0, 255)),
)


def _mutate(payload: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(payload)
    for kind, where, value in mutations:
        at = where % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << value
        elif kind == "set" and at < len(data):
            data[at] = value
        elif kind == "insert":
            data.insert(at, value)
        elif kind == "delete" and at < len(data):
            del data[at]
        elif kind == "truncate":
            del data[at:]
        elif kind == "append":
            data.append(value)
    return bytes(data)


@PROFILE
@given(contract_records(), st.lists(MUTATIONS, min_size=1, max_size=4))
def test_a_mutated_message_is_a_contract_record_or_a_dead_letter(
    named_record: tuple[str, dict[str, Any]], mutations: list[tuple[str, int, int]]
) -> None:
    name, record = named_record
    payload = CODEC.encode(name, record)
    mutated = _mutate(payload, mutations)
    try:
        decoded = CODEC.decode(name, mutated)
    except InvalidEvent:
        return  # dead-lettered with a reason
    if mutated == payload:
        assert _same(decoded, record)
        return
    # a different, still valid record: it must pass the checks and round-trip on its own
    again = CODEC.encode(name, decoded)
    assert _same(CODEC.decode(name, again), decoded)


@pytest.mark.parametrize("name", NAMES)
def test_every_single_byte_flip_of_each_example_is_handled(name: str) -> None:
    """Exhaustive over one bit per byte of every example: nothing escapes but InvalidEvent."""
    for example in contract.examples(name):
        payload = CODEC.encode(name, example)
        for at in range(len(payload)):
            for bit in (0, 7):
                mutated = _mutate(payload, [("flip", at, bit)])
                try:
                    CODEC.decode(name, mutated)
                except InvalidEvent:
                    continue
