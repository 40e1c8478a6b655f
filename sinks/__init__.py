"""ClickHouse sinks: ``Writer`` (inserts), ``Reader`` (queries), ``Connection`` (both) over a
server or chdb; migrations; readback and the reports (``sinks/reports/``) on the read side."""

from sinks.base import Connection, Reader, Writer
from sinks.connect import clickhouse_options, open_reader, open_writer
from sinks.errors import SinkDataError, SinkError, SinkUnavailable
from sinks.migrate import migrate

__all__ = [
    "Connection",
    "Reader",
    "SinkDataError",
    "SinkError",
    "SinkUnavailable",
    "Writer",
    "clickhouse_options",
    "migrate",
    "open_reader",
    "open_writer",
]
