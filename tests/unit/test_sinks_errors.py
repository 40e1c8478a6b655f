"""sinks.errors: a failure is data (dead-letter), unavailable (retry) or neither (stop)."""

from __future__ import annotations

import pytest
from clickhouse_driver import errors as driver_errors

from sinks.errors import (
    SinkDataError,
    SinkError,
    SinkUnavailable,
    code_in_message,
    from_chdb_error,
    from_driver_error,
)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        pytest.param(driver_errors.NetworkError("refused"), SinkUnavailable, id="network error"),
        pytest.param(
            driver_errors.SocketTimeoutError("slow"), SinkUnavailable, id="socket timeout"
        ),
        pytest.param(EOFError("closed"), SinkUnavailable, id="server closed the connection"),
        pytest.param(ConnectionRefusedError(111, "refused"), SinkUnavailable, id="refused"),
        pytest.param(TimeoutError("timed out"), SinkUnavailable, id="timeout"),
        pytest.param(
            driver_errors.ServerException("Code: 252. Too many parts", code=252),
            SinkUnavailable,
            id="too many parts is retryable",
        ),
        pytest.param(
            driver_errors.ServerException("Code: 241. Memory limit", code=241),
            SinkUnavailable,
            id="memory limit is retryable",
        ),
        pytest.param(
            driver_errors.ServerException("Code: 27. Cannot parse input", code=27),
            SinkDataError,
            id="unparseable input is data",
        ),
        pytest.param(
            driver_errors.ServerException("Code: 53. Type mismatch", code=53),
            SinkDataError,
            id="type mismatch is data",
        ),
        pytest.param(
            driver_errors.ServerException(
                "Code: 32. Attempt to read after eof: while receiving packet from 10.0.0.7:9000:"
                " Insertion status: Wrote 1 blocks and 69 rows on shard 0 replica 0",
                code=32,
            ),
            SinkUnavailable,
            id="a cluster node lost its connection to a shard mid-insert",
        ),
        pytest.param(
            driver_errors.ServerException("Code: 32. Attempt to read after eof", code=32),
            SinkError,
            id="an end of data that names no connection is not an outage",
        ),
        pytest.param(
            driver_errors.ServerException("Code: 279. All connection tries failed", code=279),
            SinkUnavailable,
            id="every replica of a shard down",
        ),
        pytest.param(
            driver_errors.ServerException("Code: 60. Table doesn't exist", code=60),
            SinkError,
            id="unknown table is neither (a missing migration)",
        ),
        pytest.param(
            driver_errors.TypeMismatchError("bad value"),
            SinkDataError,
            id="client-side type mismatch",
        ),
        pytest.param(
            driver_errors.LogicalError("Unknown element 'SIDEWAYS' for type Enum8"),
            SinkDataError,
            id="unknown enum symbol rejected by the driver",
        ),
        pytest.param(TypeError("unsupported operand"), SinkDataError, id="value of the wrong type"),
    ],
)
def test_driver_errors_by_kind(error: BaseException, kind: type[SinkError]) -> None:
    mapped = from_driver_error(error)
    assert type(mapped) is kind
    assert str(error) in mapped.reason


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        pytest.param(
            RuntimeError(
                "Code: 691. DB::Exception: Unknown element 'X' for enum. (UNKNOWN_ELEMENT_OF_ENUM)"
            ),
            SinkDataError,
            691,
            id="unknown enum element is data",
        ),
        pytest.param(
            RuntimeError("Code: 6. DB::Exception: Cannot parse string 'x' as DateTime64"),
            SinkDataError,
            6,
            id="cannot parse is data",
        ),
        pytest.param(
            RuntimeError("Code: 62. DB::Exception: Syntax error"),
            SinkError,
            62,
            id="syntax error is ours",
        ),
        pytest.param(
            RuntimeError("Code: 241. DB::Exception: Memory limit exceeded"),
            SinkUnavailable,
            241,
            id="memory limit is retryable",
        ),
        pytest.param(RuntimeError("no code at all"), SinkError, None, id="no code is neither"),
    ],
)
def test_chdb_errors_by_code_in_message(
    error: BaseException, kind: type[SinkError], code: int | None
) -> None:
    mapped = from_chdb_error(error)
    assert (type(mapped), mapped.code) == (kind, code)


def test_data_error_carries_the_server_message_as_reason() -> None:
    message = "Code: 27. DB::Exception: Cannot parse input: expected ',' before: 'x'"
    mapped = from_driver_error(driver_errors.ServerException(message, code=27))
    assert isinstance(mapped, SinkDataError)
    assert "Cannot parse input" in mapped.reason


@pytest.mark.parametrize(
    ("message", "code"),
    [
        pytest.param("Code: 60. DB::Exception: Table x doesn't exist", 60, id="front"),
        pytest.param(
            "Failed to create connection: Code: 36. DB::Exception", 36, id="after a prefix"
        ),
        pytest.param("Code:81. no space", 81, id="no space after colon"),
        pytest.param("nothing here", None, id="none"),
    ],
)
def test_code_in_message(message: str, code: int | None) -> None:
    assert code_in_message(message) == code
