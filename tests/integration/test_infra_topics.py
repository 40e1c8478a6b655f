"""Topic specs follow the settings: names, partitions, cleanup policy and retention."""

from __future__ import annotations

from dataclasses import fields

import pytest

from fangxian.core.settings import Settings, Topics
from infra.topics import DAY_MS, topic_specs

DEFAULTS = Settings()


def spec_for(settings: Settings, field_name: str) -> dict[str, object]:
    name = getattr(settings.topics, field_name)
    [spec] = [s for s in topic_specs(settings) if s.name == name]
    return {"partitions": spec.partitions, **spec.config}


def test_every_configured_topic_has_one_spec() -> None:
    settings = DEFAULTS.replace(topics=Topics().with_prefix("district7."))
    names = [spec.name for spec in topic_specs(settings)]
    configured = [getattr(settings.topics, f.name) for f in fields(Topics)]
    internal = [
        settings.decide_events_topic,
        settings.decide_reroute_topic,
        settings.decide_changelog_topic,
    ]
    assert names == configured + internal
    assert all(name.startswith("district7.") for name in configured)
    assert all(name.startswith(settings.app_id + "-decide-") for name in internal)


@pytest.mark.parametrize(
    ("topic", "policy"),
    [
        pytest.param(
            "decide_events_topic", "delete", id="decided events copied for the sink expire"
        ),
        pytest.param(
            "decide_reroute_topic", "delete", id="events forwarded to their community expire"
        ),
        pytest.param(
            "decide_changelog_topic", "compact", id="the rule-state changelog is compacted"
        ),
    ],
)
def test_internal_topics_are_partitioned_like_the_events(topic: str, policy: str) -> None:
    name = getattr(DEFAULTS, topic)
    [spec] = [s for s in topic_specs(DEFAULTS) if s.name == name]
    assert spec.partitions == DEFAULTS.event_partitions
    assert spec.config["cleanup.policy"] == policy


@pytest.mark.parametrize(
    ("field_name", "policy"),
    [
        pytest.param("residents", "compact", id="residents are compacted by resident_id"),
        pytest.param("passes", "compact", id="visitor passes are compacted by pass_id"),
        pytest.param("vehicles", "compact", id="vehicles are compacted by community|vehicle_id"),
        pytest.param("rules", "compact", id="community rules are compacted by community_id"),
        pytest.param("gate_scans", "delete", id="gate scans expire"),
        pytest.param("temperature_readings", "delete", id="temperature readings expire"),
        pytest.param("health_reports", "delete", id="health reports expire"),
        pytest.param("gate_decisions", "delete", id="gate decisions expire"),
        pytest.param("alerts", "delete", id="alerts expire"),
        pytest.param("dead_letters", "delete", id="dead letters expire"),
        pytest.param("reports_daily", "delete", id="daily reports expire"),
    ],
)
def test_cleanup_policy(field_name: str, policy: str) -> None:
    assert spec_for(DEFAULTS, field_name)["cleanup.policy"] == policy


@pytest.mark.parametrize(
    ("settings", "field_name", "partitions"),
    [
        pytest.param(DEFAULTS.replace(event_partitions=12), "gate_scans", 12, id="events"),
        pytest.param(DEFAULTS.replace(reference_partitions=3), "residents", 3, id="reference"),
        pytest.param(DEFAULTS.replace(event_partitions=5), "dead_letters", 5, id="dead letters"),
    ],
)
def test_partitions_come_from_settings(
    settings: Settings, field_name: str, partitions: int
) -> None:
    assert spec_for(settings, field_name)["partitions"] == partitions


def test_dead_letters_outlive_events() -> None:
    dead = int(str(spec_for(DEFAULTS, "dead_letters")["retention.ms"]))
    scans = int(str(spec_for(DEFAULTS, "gate_scans")["retention.ms"]))
    assert dead > scans


@pytest.mark.parametrize(
    "field_name",
    [
        pytest.param("gate_scans", id="raw scans are not kept past the data retention"),
        pytest.param("dead_letters", id="dead letters are not kept past the data retention"),
    ],
)
def test_retention_never_exceeds_the_data_retention_setting(field_name: str) -> None:
    settings = DEFAULTS.replace(retention_days=2)
    assert spec_for(settings, field_name)["retention.ms"] == str(2 * DAY_MS)


def test_replication_factor_comes_from_settings() -> None:
    specs = topic_specs(DEFAULTS.replace(replication_factor=3))
    assert {spec.replication_factor for spec in specs} == {3}


@pytest.mark.parametrize(
    ("replicas", "in_sync"),
    [
        pytest.param(1, 1, id="one broker: the demo, fangxian run, single-broker tests"),
        pytest.param(3, 2, id="a production cluster of three: one broker may die"),
    ],
)
def test_every_topic_internal_ones_included_is_replicated_as_the_settings_say(
    replicas: int, in_sync: int
) -> None:
    settings = DEFAULTS.replace(replication_factor=replicas, min_insync_replicas=in_sync)
    specs = topic_specs(settings)
    internal = {
        settings.decide_events_topic,
        settings.decide_reroute_topic,
        settings.decide_changelog_topic,
    }
    assert internal <= {spec.name for spec in specs}
    assert {(s.replication_factor, s.config["min.insync.replicas"]) for s in specs} == {
        (replicas, str(in_sync))
    }


def test_the_defaults_suit_one_broker() -> None:
    assert (DEFAULTS.replication_factor, DEFAULTS.min_insync_replicas) == (1, 1)


@pytest.mark.parametrize(
    ("replicas", "in_sync", "setting"),
    [
        pytest.param(3, 4, "FANGXIAN_MIN_INSYNC_REPLICAS", id="more in sync than replicas"),
        pytest.param(3, 0, "FANGXIAN_MIN_INSYNC_REPLICAS", id="no replica in sync"),
        pytest.param(0, 1, "FANGXIAN_REPLICATION_FACTOR", id="no replica at all"),
    ],
)
def test_a_replication_no_write_could_meet_is_refused_before_any_topic_exists(
    replicas: int, in_sync: int, setting: str
) -> None:
    from fangxian.core.settings import SettingError

    bad = DEFAULTS.replace(replication_factor=replicas, min_insync_replicas=in_sync)
    with pytest.raises(SettingError) as refused:
        topic_specs(bad)
    assert refused.value.setting == setting
