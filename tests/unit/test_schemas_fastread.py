"""The codec's compiled fast reader accepts only what fastavro accepts, with the same values.

The reference is the same codec with the fast path switched off (fastavro alone). For every
contract example and thousands of mutated copies, both codecs must give the same record or the
same dead-letter reason and detail.
"""

from __future__ import annotations

import dataclasses
import io
import math
import random
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from schemas import Codec, InvalidEvent, contract
from schemas.codec import HEADER_SIZE
from schemas.fastread import FastReadRefused, compile_reader


def _fastavro_only() -> Codec:
    codec = Codec()
    codec._readers = {  # the test's switch: the same codec without its fast reader
        name: dataclasses.replace(reader, fast=None) for name, reader in codec._readers.items()
    }
    return codec


def _outcome(codec: Codec, name: str, payload: bytes) -> tuple[str, Any]:
    try:
        return "decoded", codec.decode(name, payload)
    except InvalidEvent as err:
        return err.reason, err.detail


def _same(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    # repr: NaN compares unequal to itself, and -0.0 equal to 0.0; repr tells both apart
    return repr(a) == repr(b)


def _payloads() -> list[tuple[str, bytes]]:
    codec = Codec()
    return [
        (name, codec.encode(name, example))
        for name in contract.RECORD_NAMES
        for example in contract.examples(name)
    ]


PAYLOADS = _payloads()


@pytest.mark.parametrize("name", contract.RECORD_NAMES)
def test_every_contract_record_gets_a_fast_reader(name: str) -> None:
    assert Codec()._readers[name].fast is not None


@pytest.mark.parametrize(("name", "payload"), [pytest.param(n, p, id=n) for n, p in PAYLOADS])
def test_examples_read_the_same_as_with_fastavro(name: str, payload: bytes) -> None:
    fast = Codec()._readers[name].fast
    assert fast is not None
    assert _same(("decoded", fast(payload, HEADER_SIZE)), _outcome(_fastavro_only(), name, payload))


def _mutations(payload: bytes, rng: random.Random) -> bytes:
    body = bytearray(payload)
    kind = rng.randrange(5)
    at = rng.randrange(HEADER_SIZE, len(body))
    if kind == 0:  # flip a byte
        body[at] = rng.randrange(256)
    elif kind == 1:  # cut
        del body[at:]
    elif kind == 2:  # insert
        body[at:at] = rng.randbytes(rng.randint(1, 4))
    elif kind == 3:  # delete a few
        del body[at : at + rng.randint(1, 4)]
    else:  # a varint continuation byte
        body[at] |= 0x80
    return bytes(body)


def test_mutated_messages_get_the_same_record_or_the_same_reason() -> None:
    fast, slow = Codec(), _fastavro_only()
    rng = random.Random(20201201)
    seen: set[str] = set()
    for _ in range(20_000):
        name, payload = rng.choice(PAYLOADS)
        mutated = _mutations(payload, rng)
        got, want = _outcome(fast, name, mutated), _outcome(slow, name, mutated)
        assert _same(got, want), (name, mutated.hex())
        seen.add(got[0])
    # the mutations reached every kind of outcome the reader can give
    assert {"decoded", "truncated", "schema_mismatch", "invalid_value"} <= seen


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(float("nan"), id="NaN"),
        pytest.param(-0.0, id="negative zero"),
        pytest.param(1e308, id="huge"),
        pytest.param(5e-324, id="denormal"),
    ],
)
def test_doubles_keep_their_bits(value: float) -> None:
    schema = {"type": "record", "name": "D", "fields": [{"name": "x", "type": "double"}]}
    fo = io.BytesIO()
    schemaless_writer(fo, parse_schema(schema), {"x": value})
    read = compile_reader(schema)
    assert read is not None
    got = read(fo.getvalue(), 0)["x"]
    assert math.copysign(1, got) == math.copysign(1, value)
    assert repr(got) == repr(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1, id="minus one"),
        pytest.param(63, id="largest one-byte"),
        pytest.param(-64, id="smallest one-byte"),
        pytest.param(2**62 - 1, id="largest nine-byte"),
        pytest.param(-(2**62), id="smallest nine-byte"),
    ],
)
def test_longs_round_trip(value: int) -> None:
    schema = {"type": "record", "name": "L", "fields": [{"name": "x", "type": "long"}]}
    fo = io.BytesIO()
    schemaless_writer(fo, parse_schema(schema), {"x": value})
    read = compile_reader(schema)
    assert read is not None
    assert read(fo.getvalue(), 0) == {"x": value}


def test_ten_byte_longs_are_left_to_fastavro() -> None:
    schema = {"type": "record", "name": "L", "fields": [{"name": "x", "type": "long"}]}
    fo = io.BytesIO()
    schemaless_writer(fo, parse_schema(schema), {"x": 2**62})
    read = compile_reader(schema)
    assert read is not None
    with pytest.raises(FastReadRefused):
        read(fo.getvalue(), 0)


@pytest.mark.parametrize(
    "field_type",
    [
        pytest.param({"type": "fixed", "name": "F", "size": 4}, id="fixed"),
        pytest.param("float", id="float"),
        pytest.param(["null", "string", "long"], id="three-branch union"),
        pytest.param(["string", "null"], id="null second"),
        pytest.param("R", id="recursive record"),
    ],
)
def test_schemas_it_does_not_handle_get_no_fast_reader(field_type: Any) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "x", "type": field_type}]}
    assert compile_reader(schema) is None
