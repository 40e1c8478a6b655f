"""Avro object container files built from already-encoded record bodies.

The worker holds every event, decision and alert as Avro bytes already; wrapping the bodies in
a container (header with the writer schema, one block, sync marker) lets ClickHouse parse them in
C++ (``FORMAT Avro``) instead of Python converting each row to columns. Pure bytes, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

MAGIC = b"Obj\x01"
SYNC = b"fangxian-sync-01"  # any 16 bytes; the same after the header and after each block


def _long(n: int) -> bytes:
    """Avro ``long``: zig-zag, then base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _bytes(b: bytes) -> bytes:
    return _long(len(b)) + b


def container(schema_json: bytes, bodies: Sequence[bytes]) -> bytes:
    """One container file: ``bodies`` are binary-encoded records of ``schema_json``."""
    header = (
        MAGIC
        + _long(2)
        + _bytes(b"avro.schema")
        + _bytes(schema_json)
        + _bytes(b"avro.codec")
        + _bytes(b"null")
        + _long(0)
        + SYNC
    )
    data = b"".join(bodies)
    return header + _long(len(bodies)) + _long(len(data)) + data + SYNC
