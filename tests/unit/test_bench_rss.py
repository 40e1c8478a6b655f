"""Peak RSS parsing and the synthetic residents of the memory phase."""

from __future__ import annotations

import pytest

from fangxian.bench.rss import kb_to_mb, parse_status_kb, peak_rss_kb, synthetic_residents

STATUS = "Name:\tpython\nVmPeak:\t  900000 kB\nVmHWM:\t  123456 kB\nVmRSS:\t  100000 kB\n"


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        pytest.param(STATUS, "VmHWM", 123456, id="peak resident set"),
        pytest.param(STATUS, "VmRSS", 100000, id="current resident set"),
        pytest.param("Name:\tkthreadd\n", "VmHWM", None, id="kernel threads have none"),
    ],
)
def test_parse_status_kb(text: str, field: str, expected: int | None) -> None:
    assert parse_status_kb(text, field) == expected


def test_parse_status_kb_refuses_an_unexpected_unit() -> None:
    with pytest.raises(ValueError):
        parse_status_kb("VmHWM:\t 12 MB\n", "VmHWM")


def test_peak_rss_of_this_process_is_at_least_its_current_rss() -> None:
    peak = peak_rss_kb()
    assert peak is not None and peak > 0


@pytest.mark.parametrize(
    ("kb", "mb"),
    [pytest.param(None, None, id="unknown"), pytest.param(1536, 1.5, id="1536 kB")],
)
def test_kb_to_mb(kb: int | None, mb: float | None) -> None:
    assert kb_to_mb(kb) == mb


TEMPLATE = {
    "resident_id": "a" * 32,
    "community_id": "55350102MA0000007Y",
    "household_id": "b" * 32,
    "status": "NORMAL",
    "observation_start": None,
    "key_groups": ["ELDERLY"],
    "face_consent": True,
    "updated_at": 1,
}


def test_synthetic_residents_have_distinct_ids_and_shared_households() -> None:
    residents = list(synthetic_residents([TEMPLATE], 9, household_size=3))
    assert len({r["resident_id"] for r in residents}) == 9
    assert len({r["household_id"] for r in residents}) == 3
    assert all(r["community_id"] == TEMPLATE["community_id"] for r in residents)
    assert TEMPLATE["resident_id"] not in {r["resident_id"] for r in residents}


def test_synthetic_residents_do_not_share_list_fields_with_the_template() -> None:
    (resident,) = synthetic_residents([TEMPLATE], 1)
    resident["key_groups"].append("X")
    assert TEMPLATE["key_groups"] == ["ELDERLY"]


def test_synthetic_residents_need_a_template() -> None:
    with pytest.raises(ValueError):
        list(synthetic_residents([], 1))
