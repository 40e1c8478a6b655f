"""The embedded Tansu run is loopback-only without authentication, and says so when it starts."""

from __future__ import annotations

import logging

import pytest

from infra.ports import LOOPBACK, port_is_open
from infra.tansu import TansuBroker


def test_tansu_listens_on_loopback_only_and_says_it_has_no_authentication(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="infra.tansu"), TansuBroker() as broker:
        host, port = broker.bootstrap.rsplit(":", 1)
        assert host == LOOPBACK
        assert port_is_open(int(port), host=LOOPBACK)
    assert "loopback only, no authentication" in caplog.text
