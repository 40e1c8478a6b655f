"""One set of staff-facing Chinese labels, covering every symbol of its contract enum."""

from __future__ import annotations

import pytest

from schemas import contract, labels


@pytest.mark.parametrize(
    ("table", "symbols"),
    [
        pytest.param(labels.DECISION_ZH, contract.DECISIONS, id="every decision has a label"),
        pytest.param(labels.SEVERITY_ZH, contract.SEVERITIES, id="every severity has a label"),
        pytest.param(labels.SYMPTOM_ZH, contract.SYMPTOMS, id="every symptom has a label"),
        pytest.param(labels.ALERT_TYPE_ZH, contract.ALERT_TYPES, id="every alert type has a label"),
    ],
)
def test_labels_cover_the_enum(table: dict[str, str], symbols: tuple[str, ...]) -> None:
    assert set(table) == set(symbols)
    assert all(label and not label.isascii() for label in table.values())
