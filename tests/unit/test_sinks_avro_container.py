"""The container files the sink hands ClickHouse are real Avro: an independent reader
(fastavro) gets back exactly the records whose bodies went in."""

from __future__ import annotations

import io
import json

import fastavro
import pytest

from schemas import Codec, contract
from schemas.codec import HEADER_SIZE, strip_logical_types
from sinks.avro_container import _long, container


@pytest.mark.parametrize("record_name", contract.RECORD_NAMES)
def test_container_of_encoded_bodies_reads_back(record_name: str) -> None:
    codec = Codec()
    records = contract.examples(record_name)
    bodies = [codec.encode(record_name, r)[HEADER_SIZE:] for r in records]
    schema_json = codec.writer_schema_json(codec.fingerprint(record_name))
    assert json.loads(schema_json) == contract.schema(record_name)
    blob = container(schema_json, bodies)
    plain = strip_logical_types(contract.schema(record_name))  # ints for times, as in the contract
    read = list(fastavro.reader(io.BytesIO(blob), reader_schema=plain))
    assert read == [{**codec.decode(record_name, codec.encode(record_name, r))} for r in records]


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        pytest.param(0, b"\x00", id="zero"),
        pytest.param(1, b"\x02", id="one"),
        pytest.param(-1, b"\x01", id="minus one"),
        pytest.param(64, b"\x80\x01", id="two bytes"),
        pytest.param(10_000, b"\xa0\x9c\x01", id="three bytes"),
    ],
)
def test_avro_long_is_zigzag_varint(n: int, encoded: bytes) -> None:
    assert _long(n) == encoded
