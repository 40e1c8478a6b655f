"""A decide worker that restarts (or takes over partitions) restores the rules' state from its
changelog partitions: a household's exit quota does not reset because a worker went away."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fangxian.core.settings import Settings
from fangxian.ingest.produce import RecordProducer
from tests.integration.pipeline_harness import now_ms, rows_written, run_pipeline_until
from tests.integration.scenario_script import (
    Labels,
    community_rules,
    credit_code,
    gate_scan,
    read_outputs,
    resident,
)


def _produce(settings: Settings, records: list[tuple[str, dict[str, Any]]]) -> None:
    producer = RecordProducer(settings)
    for name, record in records:
        producer.send(name, record)
    producer.close()


def _scans_in(n: int) -> Any:
    def done(runtime: Any, run: Any) -> bool:
        return rows_written(runtime, "gate_scans") >= n

    return done


@pytest.mark.parametrize(
    ("restore_state", "sons_decision"),
    [
        pytest.param(
            True, ("DENY", ["ENTRY_LIMIT_EXCEEDED"]), id="state restored from the changelog"
        ),
        pytest.param(False, ("ALLOW", []), id="control: without the restore the quota resets"),
    ],
)
def test_household_exit_quota_survives_a_worker_restart(
    topics: Settings, chdb_url: str, restore_state: bool, sons_decision: tuple[str, list[str]]
) -> None:
    settings = topics.replace(clickhouse_url=chdb_url, sink_flush_s=0.3)
    labels = Labels()
    community = credit_code("91350100MA0000001")
    household = labels.token("household")
    mother, son = labels.token("mother"), labels.token("son")
    t0 = now_ms() - 3_600_000
    _produce(
        settings,
        [
            (
                "CommunityRules",
                community_rules(
                    community,
                    updated_at=t0,
                    entry_limit_scope="HOUSEHOLD",
                    entry_limit_count=1,
                    entry_limit_direction="OUT",
                    entry_limit_action="DENY",
                ),
            ),
            ("Resident", resident(mother, community=community, household=household, updated_at=t0)),
            ("Resident", resident(son, community=community, household=household, updated_at=t0)),
            (
                "GateScan",
                gate_scan(
                    labels,
                    "mother out",
                    community=community,
                    subject=mother,
                    t=t0,
                    direction="OUT",
                    household=household,
                ),
            ),
        ],
    )
    asyncio.run(run_pipeline_until(settings, _scans_in(1)))  # commits, then stops

    # a new worker process (fresh engine) of the same group; the son goes out an hour later
    _produce(
        settings,
        [
            (
                "GateScan",
                gate_scan(
                    labels,
                    "son out",
                    community=community,
                    subject=son,
                    t=t0 + 3_600_000 - 1000,
                    direction="OUT",
                    household=household,
                ),
            ),
        ],
    )
    asyncio.run(
        run_pipeline_until(settings, _scans_in(1), runtime_kwargs={"restore_state": restore_state})
    )

    outputs = read_outputs(settings)
    first = outputs.decisions_for(labels["mother out"])
    second = outputs.decisions_for(labels["son out"])
    assert [d["decision"] for d in first] == ["ALLOW"]  # decided once: not re-emitted
    assert [(d["decision"], d["reasons"]) for d in second] == [sons_decision]
