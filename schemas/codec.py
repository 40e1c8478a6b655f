"""Avro single-object encoding of the contract's records, with fastavro on the hot path.

Wire format (Avro specification, "Single object encoding"): the marker ``C3 01``, the 8-byte
little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then the
Avro binary body.

Decoding looks the writer schema up by fingerprint among the known writer schemas (the current
contract plus any registered older or newer versions) and resolves it against the reader
schema of the record the caller expects. Logical types are stripped from every schema the codec
parses, so timestamps stay ``int`` epoch milliseconds and dates ``int`` days (the canonical form,
and so the fingerprint, ignores logical types). Anything undecodable or invalid raises
:class:`InvalidEvent`; nothing else escapes ``decode`` for bad input.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Final, cast

from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
)
from avro.errors import AvroException
from avro.schema import parse as avro_parse
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import SchemaParseException, to_parsing_canonical_form
from fastavro.schema import fingerprint as fastavro_fingerprint

from schemas import contract
from schemas.errors import (
    BAD_MARKER,
    EMPTY,
    INVALID_VALUE,
    SCHEMA_MISMATCH,
    TRUNCATED,
    UNKNOWN_FINGERPRINT,
    WRONG_RECORD,
    InvalidEvent,
)
from schemas.fastread import FastRead, compile_reader
from schemas.fastwrite import FastWrite, compile_writer
from schemas.validate import VALIDATORS, Datum, Validator

__all__ = [
    "FINGERPRINT_SIZE",
    "HEADER_SIZE",
    "MARKER",
    "Codec",
    "InvalidEvent",
    "canonical_form",
    "fingerprint",
    "strip_logical_types",
]

log = logging.getLogger(__name__)

MARKER: Final = b"\xc3\x01"
FINGERPRINT_SIZE: Final = 8
HEADER_SIZE: Final = len(MARKER) + FINGERPRINT_SIZE

Schema = Mapping[str, Any]


def canonical_form(schema: Schema) -> str:
    """The Parsing Canonical Form of ``schema`` (Avro specification)."""
    return cast(str, to_parsing_canonical_form(dict(schema)))


def fingerprint(schema: Schema) -> bytes:
    """CRC-64-AVRO fingerprint of ``schema``'s canonical form: 8 bytes, little-endian."""
    # fastavro returns the hex of the little-endian bytes (as the Java implementation does).
    return bytes.fromhex(fastavro_fingerprint(canonical_form(schema), "CRC-64-AVRO"))


def strip_logical_types(schema: Any) -> Any:
    """A copy of ``schema`` without ``logicalType`` annotations (defaults left untouched)."""
    if isinstance(schema, list):
        return [strip_logical_types(branch) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    stripped = {key: value for key, value in schema.items() if key != "logicalType"}
    for key in ("type", "items", "values"):
        if key in stripped:
            stripped[key] = strip_logical_types(stripped[key])
    if "fields" in stripped:
        stripped["fields"] = [strip_logical_types(f) for f in stripped["fields"]]
    return stripped


def _fullname(schema: Schema) -> str:
    name = str(schema["name"])
    namespace = schema.get("namespace")
    return f"{namespace}.{name}" if namespace and "." not in name else name


@dataclass(frozen=True, slots=True)
class _Writer:
    """A known writer schema, parsed for fastavro."""

    fullname: str
    fingerprint: bytes
    schema: dict[str, Any]  # logical types stripped, as JSON
    parsed: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Reader:
    """A record of the current contract: what ``decode`` returns and ``encode`` writes."""

    name: str
    writer: _Writer
    header: bytes
    validate: Validator
    defaults: dict[str, Any]
    field_count: int
    exact_types: tuple[tuple[str, type], ...]
    fast: FastRead | None
    fast_write: FastWrite | None


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to read one writer fingerprint as one reader record (cached per pair)."""

    writer: dict[str, Any]
    reader: dict[str, Any] | None  # None: same schema, no resolution needed
    validate: Validator
    rejection: tuple[str, str] | None = None  # (reason, detail) when it can never be read
    # The compiled reader of the current schema (no resolution); fastavro when it refuses.
    fast: FastRead | None = None


def _parse_writer(schema: Schema) -> _Writer:
    if not isinstance(schema, Mapping) or schema.get("type") != "record":
        raise ValueError("a writer schema must be an Avro record schema (a JSON object)")
    stripped = strip_logical_types(dict(schema))
    try:
        parsed = parse_schema(stripped)
    except (SchemaParseException, ValueError, TypeError, KeyError) as err:
        raise ValueError(f"not a valid Avro schema: {err}") from err
    return _Writer(
        fullname=_fullname(stripped),
        fingerprint=fingerprint(stripped),
        schema=stripped,
        parsed=cast(dict[str, Any], parsed),
    )


def _incompatibility(reader: Schema, writer: Schema) -> str | None:
    """Why data written with ``writer`` can never be read as ``reader``; None if it can.

    Writer enum symbols unknown to a reader without an enum default only fail for the values
    that use them, so they are left to per-message resolution.
    """
    try:
        result = ReaderWriterCompatibilityChecker().get_compatibility(
            _avro_schema(reader), _avro_schema(writer)
        )
    except AvroException as err:
        return f"schema cannot be checked: {err}"
    if result.compatibility is SchemaCompatibilityType.compatible:
        return None
    if all(
        kind is SchemaIncompatibilityType.missing_enum_symbols for kind in result.incompatibilities
    ):
        return None
    return "; ".join(sorted(result.messages)) or "incompatible schemas"


def _avro_schema(schema: Schema) -> Any:
    return avro_parse(json.dumps(schema))


def _avro_package_fingerprint(schema: Schema) -> bytes:
    """The fingerprint the official ``avro`` package computes for ``schema``.

    Its canonical form keeps ``{"type": "long"}`` for a logical type where the specification's
    [PRIMITIVES] step, Java and fastavro write ``"long"``; producers using that package send
    this fingerprint, so the codec accepts it as an alias of the current schema.
    """
    try:
        return bytes(_avro_schema(schema).fingerprint("CRC-64-AVRO"))
    except AvroException:
        return fingerprint(schema)


def _truncated_or_mismatch(err: Exception, fo: BytesIO, size: int) -> InvalidEvent:
    if isinstance(err, EOFError) or (isinstance(err, IndexError) and fo.tell() >= size):
        # fastavro's compiled reader signals a read past the end as EOFError or IndexError.
        return InvalidEvent(TRUNCATED, f"body ends before the record does ({size} bytes)")
    return InvalidEvent(
        SCHEMA_MISMATCH,
        f"body does not match the writer schema at byte {fo.tell()}: {type(err).__name__}: {err}",
    )


class Codec:
    """Encode and decode the contract's records as Avro single-object messages.

    ``Codec()`` serves the current contract; ``schemas`` (record name -> schema) replaces it,
    e.g. in tests. ``register_writer_schema`` teaches it other versions (older or newer) of a
    record so their messages decode too. Not thread-safe for registration; decoding only
    fills caches.
    """

    def __init__(self, schemas: Mapping[str, Schema] | None = None) -> None:
        self._readers: dict[str, _Reader] = {}
        self._writers: dict[bytes, _Writer] = {}
        # record name -> writer fingerprint -> plan; filled on first sight of a pair
        self._plans: dict[str, dict[bytes, _Plan]] = {}
        if schemas is None:
            schemas = {name: contract.schema(name) for name in contract.RECORD_NAMES}
        self._add_readers(schemas)

    def _add_readers(self, sources: Mapping[str, Schema]) -> None:
        for name, source in sources.items():
            writer = _parse_writer(source)
            self._add_writer(writer, source)
            header = MARKER + writer.fingerprint
            self._readers[name] = _Reader(
                name=name,
                writer=writer,
                header=header,
                validate=VALIDATORS.get(name, _no_checks),
                defaults={f["name"]: f["default"] for f in source["fields"] if "default" in f},
                field_count=len(source["fields"]),
                exact_types=_exact_types(writer.schema),
                fast=compile_reader(writer.schema),
                fast_write=compile_writer(writer.schema, header),
            )
            self._plans[name] = {}

    def _add_writer(self, writer: _Writer, source: Schema) -> None:
        self._writers.setdefault(writer.fingerprint, writer)
        alias = _avro_package_fingerprint(source)
        if alias != writer.fingerprint:
            self._writers.setdefault(alias, writer)

    @property
    def record_names(self) -> tuple[str, ...]:
        return tuple(self._readers)

    def fingerprint(self, record_name: str) -> bytes:
        """The 8-byte fingerprint ``encode`` writes for ``record_name``."""
        return self._reader(record_name).writer.fingerprint

    def register_writer_schema(self, schema: Schema) -> bytes:
        """Accept messages written with ``schema`` (another version of a record); returns its
        fingerprint. Registering a schema twice is harmless."""
        writer = _parse_writer(schema)
        if writer.fingerprint not in self._writers:
            self._add_writer(writer, schema)
            log.info(
                "registered writer schema %s fingerprint %s",
                writer.fullname,
                writer.fingerprint.hex(),
            )
        return writer.fingerprint

    def register_writer_schemas(self, schemas: Iterable[Schema]) -> list[bytes]:
        return [self.register_writer_schema(s) for s in schemas]

    def encode(self, record_name: str, datum: Datum) -> bytes:
        """``datum`` as a single-object message of ``record_name``'s current schema.

        Raises ``InvalidEvent("invalid_value", ...)`` for a datum that fails validation or does
        not fit the schema (missing, extra or mistyped fields).
        """
        reader = self._reader(record_name)
        fast = reader.fast_write
        if fast is not None:
            try:
                message = fast(datum)
            # It refuses any datum that is not exactly of the schema's types (see
            # schemas.fastwrite); the checks and fastavro below then decide as they always did.
            except Exception:
                pass
            else:
                # Written means every field was there with its exact type: only the values
                # are left to check.
                reader.validate(datum)
                return message
        _require_exact_types(record_name, datum, reader.exact_types)
        try:
            if len(datum) < reader.field_count:
                reader.validate({**reader.defaults, **datum})
            else:
                reader.validate(datum)
        except KeyError as err:
            raise InvalidEvent(INVALID_VALUE, f"{record_name} lacks field {err}") from err
        fo = BytesIO()
        fo.write(reader.header)
        try:
            schemaless_writer(fo, reader.writer.parsed, datum, strict_allow_default=True)
        except (TypeError, ValueError, OverflowError, KeyError, AttributeError) as err:
            raise InvalidEvent(
                INVALID_VALUE, f"{record_name} does not fit its schema: {err}"
            ) from err
        return fo.getvalue()

    def decode(self, record_name: str, payload: bytes, *, validate: bool = True) -> dict[str, Any]:
        """The ``record_name`` record in ``payload``, resolved to the current schema.

        ``validate=False`` skips the value checks, for bytes this process already validated
        (reference records are validated once when they arrive and decoded again on lookup).

        ``payload`` is ``bytes`` (a Kafka tombstone, value ``None``, is the caller's to handle).

        Raises ``InvalidEvent`` with reason ``empty``, ``bad_marker``, ``truncated``,
        ``unknown_fingerprint``, ``wrong_record``, ``schema_mismatch`` or ``invalid_value``.
        """
        if payload[:2] != MARKER:
            raise _bad_start(payload)
        try:
            plan = self._plans[record_name][payload[2:HEADER_SIZE]]
        except KeyError:
            plan = self._plan(record_name, payload)
        if plan.rejection is not None:
            raise InvalidEvent(*plan.rejection)
        datum: dict[str, Any]
        fast = plan.fast
        if fast is None:
            datum = _read_with_fastavro(plan, record_name, payload)
        else:
            try:
                datum = fast(payload, HEADER_SIZE)
            # It refuses anything unusual (see schemas.fastread); fastavro then decides, so
            # a bad message gets exactly the reason and detail it always got.
            except Exception:
                datum = _read_with_fastavro(plan, record_name, payload)
        if validate:
            plan.validate(datum)
        return datum

    def writer_record_name(self, payload: bytes) -> str:
        """Full name of the record type ``payload`` was written as, without decoding the body."""
        if payload[:2] != MARKER:
            raise _bad_start(payload)
        return self._writer(payload).fullname

    def _reader(self, record_name: str) -> _Reader:
        try:
            return self._readers[record_name]
        except KeyError:
            raise KeyError(
                f"unknown record {record_name!r}; known: {', '.join(self._readers)}"
            ) from None

    def _writer(self, payload: bytes) -> _Writer:
        if len(payload) < HEADER_SIZE:
            raise InvalidEvent(
                TRUNCATED, f"{len(payload)} bytes: shorter than the {HEADER_SIZE}-byte header"
            )
        fp = payload[2:HEADER_SIZE]
        writer = self._writers.get(fp)
        if writer is None:
            raise InvalidEvent(
                UNKNOWN_FINGERPRINT, f"no known writer schema has fingerprint {fp.hex()}"
            )
        return writer

    def _plan(self, record_name: str, payload: bytes) -> _Plan:
        reader = self._reader(record_name)
        writer = self._writer(payload)
        plan = _plan_for(reader, writer)
        # Keyed by the fingerprint on the wire, which may be an alias of writer.fingerprint.
        self._plans[record_name][payload[2:HEADER_SIZE]] = plan
        log.debug(
            "decode plan %s -> %s: %s",
            payload[2:HEADER_SIZE].hex(),
            record_name,
            plan.rejection or "ok",
        )
        return plan


def _read_with_fastavro(plan: _Plan, record_name: str, payload: bytes) -> dict[str, Any]:
    fo = BytesIO(payload)
    fo.seek(HEADER_SIZE)
    try:
        datum = schemaless_reader(fo, plan.writer, plan.reader)
    # Bytes from the network can make the reader fail in many ways (EOF, bad UTF-8,
    # enum index out of range, unresolvable enum symbol): each is a dead letter.
    except Exception as err:
        raise _truncated_or_mismatch(err, fo, len(payload)) from err
    if fo.tell() != len(payload):
        raise InvalidEvent(
            SCHEMA_MISMATCH,
            f"{len(payload) - fo.tell()} trailing bytes after the {record_name} record",
        )
    return cast(dict[str, Any], datum)


def _plan_for(reader: _Reader, writer: _Writer) -> _Plan:
    if writer.fingerprint == reader.writer.fingerprint:
        return _Plan(
            writer=reader.writer.parsed, reader=None, validate=reader.validate, fast=reader.fast
        )
    rejection: tuple[str, str] | None = None
    if writer.fullname != reader.writer.fullname:
        rejection = (
            WRONG_RECORD,
            f"message is a {writer.fullname}, expected {reader.writer.fullname}",
        )
    else:
        problem = _incompatibility(reader.writer.schema, writer.schema)
        if problem is not None:
            rejection = (
                SCHEMA_MISMATCH,
                f"writer schema {writer.fingerprint.hex()} cannot be read as the current "
                f"{reader.name}: {problem}",
            )
    return _Plan(
        writer=writer.parsed,
        reader=reader.writer.parsed,
        validate=reader.validate,
        rejection=rejection,
    )


# fastavro writes any truthy value as a boolean and truncates a float written as an int;
# the codec refuses both on encode.
_EXACT_PYTHON_TYPES: Final[Mapping[str, type]] = {"boolean": bool, "int": int, "long": int}


def _exact_types(schema: Schema) -> tuple[tuple[str, type], ...]:
    """(field, Python type) for each boolean/int/long field, nullable or not."""
    found = []
    for f in schema["fields"]:
        branches = f["type"] if isinstance(f["type"], list) else [f["type"]]
        scalar = [b for b in branches if b != "null"]
        if len(scalar) == 1 and isinstance(scalar[0], str) and scalar[0] in _EXACT_PYTHON_TYPES:
            found.append((f["name"], _EXACT_PYTHON_TYPES[scalar[0]]))
    return tuple(found)


def _require_exact_types(
    record_name: str, datum: Datum, exact_types: tuple[tuple[str, type], ...]
) -> None:
    for name, python_type in exact_types:
        value = datum.get(name)
        if value is not None and type(value) is not python_type:
            raise InvalidEvent(
                INVALID_VALUE,
                f"{record_name}.{name} must be {python_type.__name__}, "
                f"not {type(value).__name__} (got {value!r:.60})",
            )


def _bad_start(payload: bytes) -> InvalidEvent:
    if not payload:
        return InvalidEvent(EMPTY, "empty payload")
    if payload == MARKER[: len(payload)]:
        return InvalidEvent(TRUNCATED, f"{len(payload)} bytes: shorter than the marker")
    return InvalidEvent(
        BAD_MARKER,
        f"payload starts with {payload[:2].hex()} instead of the single-object marker c301",
    )


def _no_checks(datum: Datum) -> None:
    """Validator for records the contract does not know (custom ``schemas``)."""
