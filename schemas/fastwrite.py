"""A straight-line Avro body writer compiled per record schema: the codec's fast encode path.

fastavro's compiled writer calls the file object's ``write`` per value and resolves each union
by trying its branches; ``compile_writer`` turns a record schema into one Python function that
builds the single-object message (header included) in one ``bytearray``.

It writes only datums whose every value has exactly the Python type the field wants (``str``
for string, ``int`` but not ``bool`` for int/long within range, ``float`` for double, ``list``
for array, ``dict`` with ``str`` keys for map, a known symbol for enum), with every field
present and no other. Anything else raises ``FastWriteRefused`` and the codec writes the datum
with fastavro as before, so what is accepted, what is refused and the bytes written do not
change. Schemas it does not compile get ``None``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from schemas.fastread import _fullname, _named_types

__all__ = ["FastWrite", "FastWriteRefused", "compile_writer"]

FastWrite = Callable[[Mapping[str, Any]], bytes]

_DOUBLE = struct.Struct("<d").pack
_INT_LIMIT = 2**31
_LONG_LIMIT = 2**62  # nine varint bytes at most, the range the fast reader reads back
# the zig-zag varint of 0..63, one byte each: string lengths and small counts
_SMALL = tuple(bytes([n << 1]) for n in range(64))


class FastWriteRefused(Exception):
    """The fast writer will not write this datum; fastavro decides."""


class _Unsupported(Exception):
    pass


def _varint(value: int) -> bytes:
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class _Emitter:
    def __init__(self, named: Mapping[str, Any]) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.named = dict(named)
        self._n = 0
        self._expanding: set[str] = set()

    def var(self, stem: str) -> str:
        self._n += 1
        return f"{stem}{self._n}"

    def const(self, value: Any) -> str:
        name = self.var("c")
        self.consts[name] = value
        return name

    def out(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def refuse_unless(self, indent: int, condition: str) -> None:
        self.out(indent, f"if not ({condition}):")
        self.out(indent + 1, "raise FastWriteRefused")

    def length(self, indent: int, size: str) -> None:
        self.out(indent, f"out += _SMALL[{size}] if {size} < 64 else _varint({size})")

    def value(self, schema: Any, indent: int, v: str) -> None:
        """Lines that append the encoding of variable ``v`` (of ``schema``) to ``out``."""
        if isinstance(schema, list):
            self.union(schema, indent, v)
            return
        kind = schema["type"] if isinstance(schema, dict) else schema
        if isinstance(kind, (dict, list)):
            self.value(kind, indent, v)
            return
        if kind == "null":
            self.refuse_unless(indent, f"{v} is None")
        elif kind == "boolean":
            self.refuse_unless(indent, f"type({v}) is bool")
            self.out(indent, f'out += b"\\x01" if {v} else b"\\x00"')
        elif kind in ("int", "long"):
            limit = "_INT_LIMIT" if kind == "int" else "_LONG_LIMIT"
            self.refuse_unless(indent, f"type({v}) is int and -{limit} <= {v} < {limit}")
            self.out(indent, f"out += _SMALL[{v}] if 0 <= {v} < 64 else _varint({v})")
        elif kind == "double":
            self.refuse_unless(indent, f"type({v}) is float")
            self.out(indent, f"out += _DOUBLE({v})")
        elif kind == "string":
            self.refuse_unless(indent, f"type({v}) is str")
            raw = self.var("s")
            size = self.var("n")
            self.out(indent, f"{raw} = {v}.encode()")
            self.out(indent, f"{size} = len({raw})")
            self.length(indent, size)
            self.out(indent, f"out += {raw}")
        elif kind == "bytes":
            self.refuse_unless(indent, f"type({v}) is bytes")
            size = self.var("n")
            self.out(indent, f"{size} = len({v})")
            self.length(indent, size)
            self.out(indent, f"out += {v}")
        elif kind == "enum":
            table = self.const({s: _varint(i) for i, s in enumerate(schema["symbols"])})
            code = self.var("k")
            self.refuse_unless(indent, f"type({v}) is str")
            self.out(indent, f"{code} = {table}.get({v})")
            self.refuse_unless(indent, f"{code} is not None")
            self.out(indent, f"out += {code}")
        elif kind == "array":
            self.refuse_unless(indent, f"type({v}) is list")
            item = self.var("e")
            self.out(indent, f"if {v}:")
            self.length(indent + 1, f"len({v})")
            self.out(indent + 1, f"for {item} in {v}:")
            self.value(schema["items"], indent + 2, item)
            self.out(indent, 'out += b"\\x00"')
        elif kind == "map":
            self.refuse_unless(indent, f"type({v}) is dict")
            key, item = self.var("key"), self.var("e")
            self.out(indent, f"if {v}:")
            self.length(indent + 1, f"len({v})")
            self.out(indent + 1, f"for {key}, {item} in {v}.items():")
            self.value("string", indent + 2, key)
            self.value(schema["values"], indent + 2, item)
            self.out(indent, 'out += b"\\x00"')
        elif kind == "record":
            self.record(schema, indent, v)
        elif isinstance(kind, str) and kind in self.named and kind not in self._expanding:
            self._expanding.add(kind)
            try:
                self.value(self.named[kind], indent, v)
            finally:
                self._expanding.discard(kind)
        else:
            raise _Unsupported(str(kind))

    def union(self, branches: list[Any], indent: int, v: str) -> None:
        if len(branches) != 2 or branches[0] != "null" or branches[1] == "null":
            raise _Unsupported("union other than [null, X]")
        self.out(indent, f"if {v} is None:")
        self.out(indent + 1, 'out += b"\\x00"')
        self.out(indent, "else:")
        self.out(indent + 1, 'out += b"\\x02"')
        self.value(branches[1], indent + 1, v)

    def record(self, schema: Mapping[str, Any], indent: int, d: str) -> None:
        name = _fullname(schema)
        if name in self._expanding:
            raise _Unsupported("recursive record")
        self._expanding.add(name)
        fields = schema["fields"]
        self.refuse_unless(indent, f"type({d}) is dict and len({d}) == {len(fields)}")
        for f in fields:
            v = self.var("f")
            self.out(indent, f"{v} = {d}[{f['name']!r}]")
            self.value(f["type"], indent, v)
        self._expanding.discard(name)


def compile_writer(schema: Mapping[str, Any], header: bytes) -> FastWrite | None:
    """A writer of ``header`` + the body of a datum of ``schema`` (plain JSON, no logical
    types), or ``None`` if the schema uses something the fast path does not handle."""
    named: dict[str, Any] = {}
    _named_types(schema, None, named)
    emit = _Emitter(named)
    try:
        emit.record(schema, 1, "datum")
    except _Unsupported:
        return None
    source = "\n".join(
        [
            "def write(datum):",
            "    out = bytearray(HEADER)",
            *emit.lines,
            "    return bytes(out)",
        ]
    )
    scope: dict[str, Any] = {
        "FastWriteRefused": FastWriteRefused,
        "HEADER": header,
        "_SMALL": _SMALL,
        "_varint": _varint,
        "_DOUBLE": _DOUBLE,
        "_INT_LIMIT": _INT_LIMIT,
        "_LONG_LIMIT": _LONG_LIMIT,
        **emit.consts,
    }
    exec(compile(source, f"<fast writer {_fullname(schema)}>", "exec"), scope)
    writer: FastWrite = scope["write"]
    return writer
