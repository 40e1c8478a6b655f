"""The community simulator, in three parts: ``model`` (contract defaults, community shape,
arrival profile), ``traffic`` (``CommunitySimulator``: reference data and a day's events) and
``scenario`` (one scripted cause per alert type)."""

from fangxian.sim.model import (
    ALERT_TYPES,
    DEFAULT_RULES,
    DEFAULT_START_MS,
    SCRIPTED_DURATION_S,
    Scenario,
)
from fangxian.sim.traffic import CommunitySimulator, ScriptedRun, scripted_day

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
