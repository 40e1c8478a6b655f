"""Pure epidemic-prevention rules. Each module holds one concern; none does I/O or reads a clock:
time comes from ``event_time`` or an explicit ``now_ms``."""
