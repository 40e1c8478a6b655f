"""Ingest: the CSV/JSON reference loaders (pseudonymising at the edge) and the record producer."""
