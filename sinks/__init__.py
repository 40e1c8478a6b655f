"""ClickHouse sinks: one ``Writer`` interface (server or chdb), migrations, the batcher."""

from sinks.base import Writer, open_writer
from sinks.batcher import TableBatcher
from sinks.errors import SinkDataError, SinkError, SinkUnavailable
from sinks.migrate import migrate

__all__ = [
    "SinkDataError",
    "SinkError",
    "SinkUnavailable",
    "TableBatcher",
    "Writer",
    "migrate",
    "open_writer",
]
