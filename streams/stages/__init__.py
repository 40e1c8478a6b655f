"""The two stages of the topology (docs/topology.md): ``decide`` (route → rules, Kafka
transactions, state changelogged to Kafka) and ``sink`` (read_committed → ClickHouse)."""
