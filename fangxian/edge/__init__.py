"""fangxian edge: where gate devices meet fangxian (docs/edge.md).

``adapter`` is the one interface a device family implements; ``adapters/`` holds one module per
family; the service around them (register, auth, pseudonyms, outbox, decisions, fallback,
metrics) is written once.
"""
