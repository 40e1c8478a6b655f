"""The staff console (``fangxian console``): one screen for on-duty staff in the browser.

``auth`` (scrypt passwords, signed session cookies, CSRF), ``scope`` (who sees which
community), ``roster`` (the staff directory from ``reference.staff``), ``live`` (Kafka →
state → Server-Sent Events), ``history`` (ClickHouse queries), ``actions`` (acknowledge and
resolve as ``alert.actions`` requests, the dispatcher's API), ``app`` (the Starlette app,
templates and static files beside it), ``server`` (assembling and serving it).
"""
