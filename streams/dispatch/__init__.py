"""The on-duty dispatcher: alerts → the right person over group bots and SMS, acknowledged
through a signed link, escalated when not (issue 11; docs/dispatch.md).

Pure parts (no I/O): ``contacts`` (encrypted contact details, masking), ``roster`` (staff,
duty shifts, escalation policies; who is on duty), ``acklink`` (signed expiring acknowledge
links), ``machine`` (routing, grouping, quiet hours, escalation and repeat as a fold over
``alert.actions``), ``message`` (the text staff read).

I/O: ``stage`` (the aiokafka loop), ``ackweb`` (the acknowledge endpoint), ``action_sink``
(``alert.actions`` → ClickHouse). The roster files are read by
``fangxian/ingest/roster_files.py`` (validated with line numbers).
"""
