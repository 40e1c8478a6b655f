"""The codec's compiled fast writer writes the same bytes as fastavro, and refuses (leaving it
to fastavro and the checks) everything else: every field of every contract example is set to
each value of a table of awkward values and both codecs must give the same bytes or the same
dead-letter reason and detail."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from schemas import Codec, InvalidEvent, contract
from schemas.fastwrite import compile_writer


class _Str(str):
    pass


AWKWARD: tuple[Any, ...] = (
    None,
    "",
    "x",
    "汉字 and ascii",
    "\ud800",  # a lone surrogate: not encodable as UTF-8
    _Str("x"),
    "9f8adcb4-6766-5872-aecc-5d29c01e630f",
    "91350100M000100Y43",
    "ALLOW",
    "DENY",
    "NOT_A_SYMBOL",
    0,
    -1,
    63,
    64,
    -65,
    2**31 - 1,
    2**31,
    -(2**31) - 1,
    2**62,
    2**63,
    True,
    False,
    36.6,
    float("nan"),
    -0.0,
    37,
    1_600_000_000_000,
    [],
    ["FEVER"],
    ["x"] * 70,
    ("FEVER",),
    {},
    {"k": "v"},
    {"k": 1},
    {1: "v"},
    {f"k{i}": "v" for i in range(70)},
    b"raw",
    b"",
    bytearray(b"raw"),
)


def _fastavro_only() -> Codec:
    codec = Codec()
    codec._readers = {  # the test's switch: the same codec without its fast paths
        name: dataclasses.replace(reader, fast=None, fast_write=None)
        for name, reader in codec._readers.items()
    }
    return codec


def _outcome(codec: Codec, name: str, datum: Any) -> tuple[str, Any]:
    try:
        return "encoded", codec.encode(name, datum)
    except InvalidEvent as err:
        return err.reason, err.detail
    except (KeyError, TypeError, AttributeError) as err:
        return type(err).__name__, str(err)


@pytest.mark.parametrize("name", contract.RECORD_NAMES)
def test_every_contract_record_gets_a_fast_writer(name: str) -> None:
    assert Codec()._readers[name].fast_write is not None


@pytest.mark.parametrize("name", contract.RECORD_NAMES)
def test_fast_writer_agrees_with_fastavro_and_the_checks(name: str) -> None:
    fast, slow = Codec(), _fastavro_only()
    outcomes = set()
    for example in contract.examples(name):
        cases: list[Any] = [dict(example), {**example, "extra": 1}]
        cases += [{**example, f: v} for f, v in itertools.product(example, AWKWARD)]
        cases += [{k: v for k, v in example.items() if k != f} for f in example]
        for datum in cases:
            want = _outcome(slow, name, datum)
            assert _outcome(fast, name, datum) == want, datum
            outcomes.add(want[0])
    assert {"encoded", "invalid_value"} <= outcomes


def test_fast_writer_is_used_for_a_valid_datum() -> None:
    codec = Codec()
    example = contract.examples("GateDecision")[0]
    write = codec._readers["GateDecision"].fast_write
    assert write is not None
    assert write(example) == codec.encode("GateDecision", example)


@pytest.mark.parametrize(
    "field_type",
    [
        pytest.param({"type": "fixed", "name": "F", "size": 4}, id="fixed"),
        pytest.param("float", id="float"),
        pytest.param(["null", "string", "long"], id="three-branch union"),
        pytest.param("R", id="recursive record"),
    ],
)
def test_schemas_it_does_not_handle_get_no_fast_writer(field_type: Any) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "x", "type": field_type}]}
    assert compile_writer(schema, b"") is None
