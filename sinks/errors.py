"""Sink failures split by kind.

- ``SinkDataError``: the server rejected the rows as data (a value it cannot parse, an unknown
  enum symbol, a null where none is allowed). Retrying will not help: dead-letter the rows.
- ``SinkUnavailable``: the server could not be reached or is overloaded (connection refused,
  timeouts, too many parts, memory limit). Retry with backoff and pause consumption; never drop.
- ``SinkError`` itself: anything else (unknown table or column, a syntax error in our own SQL).
  That is a bug or a missing migration, so it should stop the worker loudly.

ClickHouse error codes are shared by the server and by chdb (the same engine in-process), so one
classification by code serves both writers.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager

# Codes whose cause is the inserted data itself (ClickHouse src/Common/ErrorCodes.cpp).
DATA_ERROR_CODES: frozenset[int] = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        25,  # CANNOT_PARSE_ESCAPE_SEQUENCE
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        128,  # TOO_LARGE_ARRAY_SIZE
        131,  # TOO_LARGE_STRING_SIZE
        190,  # SIZES_OF_ARRAYS_DOESNT_MATCH
        248,  # INVALID_PARTITION_VALUE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        366,  # SIZES_OF_NESTED_COLUMNS_ARE_INCONSISTENT
        376,  # CANNOT_PARSE_UUID
        407,  # DECIMAL_OVERFLOW
        441,  # CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING
        691,  # UNKNOWN_ELEMENT_OF_ENUM
    }
)

# Codes that say "not now": the same insert can succeed later.
UNAVAILABLE_CODES: frozenset[int] = frozenset(
    {
        95,  # CANNOT_READ_FROM_SOCKET
        96,  # CANNOT_WRITE_TO_SOCKET
        159,  # TIMEOUT_EXCEEDED
        173,  # CANNOT_ALLOCATE_MEMORY
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        225,  # NO_ZOOKEEPER
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        319,  # UNKNOWN_STATUS_OF_INSERT
        364,  # RECEIVED_ERROR_TOO_MANY_REQUESTS
        394,  # QUERY_WAS_CANCELLED
        439,  # CANNOT_SCHEDULE_TASK
        999,  # KEEPER_EXCEPTION
    }
)

_CODE_IN_MESSAGE = re.compile(r"Code:\s*(\d+)")

# A server that lost its own connection to another server mid-query — a shard or replica of a
# cluster, written through a Distributed table — says so with a code of its own (32
# ATTEMPT_TO_READ_AFTER_EOF, 1000 POCO_EXCEPTION) and one of these in the message; the same
# insert can succeed once that server answers again (sinks/cluster.py).
REMOTE_CONNECTION_LOST = (
    "while receiving packet from",
    "while reading from socket",
    "while writing to socket",
    "Connection refused",
    "Connection reset by peer",
)


class SinkError(Exception):
    """A write or query failed for a reason that is neither the data nor the connection."""

    def __init__(self, reason: str, *, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class SinkDataError(SinkError):
    """The server rejected the rows as data; ``reason`` carries the server's message."""


class SinkUnavailable(SinkError):
    """The server is unreachable, timed out or overloaded; the write can be retried."""


def from_code(code: int | None, message: str) -> SinkError:
    """The sink error for a ClickHouse error code (``None`` when the message carried none)."""
    if code in DATA_ERROR_CODES:
        return SinkDataError(message, code=code)
    if code in UNAVAILABLE_CODES:
        return SinkUnavailable(message, code=code)
    if code in (32, 1000) and any(marker in message for marker in REMOTE_CONNECTION_LOST):
        return SinkUnavailable(message, code=code)
    return SinkError(message, code=code)


def code_in_message(message: str) -> int | None:
    """The ``Code: N`` that ClickHouse puts at the front of its exception text."""
    match = _CODE_IN_MESSAGE.search(message)
    return int(match.group(1)) if match else None


# Raised by our own encoding (or pyarrow) before a byte reaches the server: the rows do not fit
# the column types.
_CLIENT_SIDE_DATA: tuple[type[BaseException], ...] = (
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,
)
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    EOFError,
    ConnectionError,
    socket.timeout,
    TimeoutError,
    OSError,
)


def from_driver_error(err: BaseException) -> SinkError:
    """Map a clickhouse-driver (or socket) exception onto the sink error kinds.

    clickhouse-driver is imported here, on the server path only: the chdb path never loads it.
    """
    from clickhouse_driver import errors as driver_errors

    if isinstance(err, SinkError):
        return err
    if isinstance(err, driver_errors.ServerException):
        return from_code(err.code, str(err))
    if isinstance(
        err, (driver_errors.NetworkError, driver_errors.SocketTimeoutError, *_UNAVAILABLE)
    ):
        return SinkUnavailable(f"{type(err).__name__}: {err}")
    client_side = (driver_errors.TypeMismatchError, driver_errors.LogicalError, *_CLIENT_SIDE_DATA)
    if isinstance(err, client_side):
        return SinkDataError(f"{type(err).__name__}: {err}")
    if isinstance(err, driver_errors.Error):
        return SinkError(f"{type(err).__name__}: {err}", code=getattr(err, "code", None))
    return SinkError(f"{type(err).__name__}: {err}")


def from_chdb_error(err: BaseException) -> SinkError:
    """Map a chdb exception (a RuntimeError carrying the engine's ``Code: N`` text)."""
    if isinstance(err, SinkError):
        return err
    message = str(err)
    code = code_in_message(message)
    if code is None and isinstance(err, _CLIENT_SIDE_DATA):
        # pyarrow refused to build the batch: the rows do not fit the column types.
        return SinkDataError(f"{type(err).__name__}: {err}")
    return from_code(code, message)


@contextmanager
def driver_errors_as_sink_errors() -> Iterator[None]:
    """Re-raise anything clickhouse-driver throws as a ``SinkError`` (chained)."""
    try:
        yield
    except SinkError:
        raise
    except Exception as err:
        raise from_driver_error(err) from err


@contextmanager
def chdb_errors_as_sink_errors() -> Iterator[None]:
    """Re-raise anything chdb or pyarrow throws as a ``SinkError`` (chained)."""
    try:
        yield
    except SinkError:
        raise
    except Exception as err:
        raise from_chdb_error(err) from err
