"""The people-facing read side that is not a report: contact tracing (``contacts``) and erasure
(``forget``). The daily report itself is built in ``sinks/reports/``."""
