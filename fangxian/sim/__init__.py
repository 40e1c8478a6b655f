"""The community simulator: reference data and a day's traffic (``traffic.py``)."""

from fangxian.sim.traffic import (
    ALERT_TYPES,
    DEFAULT_RULES,
    DEFAULT_START_MS,
    SCRIPTED_DURATION_S,
    CommunitySimulator,
    Scenario,
    ScriptedRun,
    scripted_day,
)

__all__ = [
    "ALERT_TYPES",
    "DEFAULT_RULES",
    "DEFAULT_START_MS",
    "SCRIPTED_DURATION_S",
    "CommunitySimulator",
    "Scenario",
    "ScriptedRun",
    "scripted_day",
]
