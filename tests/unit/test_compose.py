"""The production stack (docker-compose.yml) hangs together: services, healthchecks, the order
they start in, settings names, secrets, Prometheus targets, and the deployment guide."""

from __future__ import annotations

import os
import re
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from fangxian.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PROMETHEUS = yaml.safe_load((ROOT / "infra/prometheus/prometheus.yml").read_text(encoding="utf-8"))
DEPLOY_DOC = (ROOT / "docs/deploy.md").read_text(encoding="utf-8")

STAGES = {"decide": "FANGXIAN_METRICS_PORT", "sink": "FANGXIAN_SINK_METRICS_PORT"}
LONG_RUNNING = ["kafka", "clickhouse", *STAGES, "prometheus", "grafana"]
DISPATCH_ENV = ("FANGXIAN_ROSTER_KEY", "FANGXIAN_ACK_LINK_KEY", "FANGXIAN_CLICKHOUSE_URL")
SETTINGS_ENV = {"FANGXIAN_" + f.name.upper() for f in fields(Settings) if f.name != "topics"}
# read by `fangxian acl apply` (fangxian/cli/acl.py), not by Settings
ACL_PASSWORD_ENV = re.compile(r"^FANGXIAN_ACL_PASSWORD_[A-Z]+$")
KAFKA_START = ROOT / "infra/kafka/compose-start.sh"
ENV_EXAMPLE = ROOT / ".env.example"
INTERPOLATION = re.compile(r"^\$\{[A-Z_]+:\?[^}]+\}$")  # ${NAME:?message}: required, no default
SECRET_NAME = re.compile(r"PASSWORD|KEY|SECRET|TOKEN")


def env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[service].get("environment") or {}).items()}


@pytest.mark.parametrize("service", LONG_RUNNING)
def test_long_running_service_has_a_healthcheck(service: str) -> None:
    check = SERVICES[service].get("healthcheck") or {}
    assert check.get("test"), f"{service} has no healthcheck"
    assert not check.get("disable")


@pytest.mark.parametrize(
    ("service", "command"),
    [
        pytest.param("topics", ["topics", "create"], id="topics creates the Kafka topics once"),
        pytest.param(
            "migrate", ["db", "migrate"], id="migrate runs the ClickHouse migrations once"
        ),
        pytest.param("decide", ["worker", "--role", "decide"], id="decide runs the decide stage"),
        pytest.param("sink", ["worker", "--role", "sink"], id="sink runs the sink stage"),
        pytest.param(
            "dispatch", ["worker", "--role", "dispatch"], id="dispatch runs the dispatcher"
        ),
    ],
)
def test_fangxian_services_run_the_cli(service: str, command: list[str]) -> None:
    assert SERVICES[service]["command"] == command
    assert SERVICES[service]["image"] == SERVICES["decide"]["image"]


def test_the_stages_are_separate_services() -> None:
    """A sink stall cannot reach the gates: no service runs both stages."""
    assert "worker" not in SERVICES
    assert SERVICES["decide"]["command"] != SERVICES["sink"]["command"]


@pytest.mark.parametrize(
    ("service", "needs", "condition"),
    [
        pytest.param("topics", "kafka", "service_healthy", id="topics wait for a healthy kafka"),
        pytest.param("migrate", "clickhouse", "service_healthy", id="migrate waits for clickhouse"),
        *[
            pytest.param(
                stage, "topics", "service_completed_successfully", id=f"{stage} after topics"
            )
            for stage in STAGES
        ],
        *[
            pytest.param(s, "migrate", "service_completed_successfully", id=f"{s} after migrate")
            for s in ("sink",)
        ],
        *[
            pytest.param(s, "kafka", "service_healthy", id=f"{s} needs a healthy kafka")
            for s in STAGES
        ],
        *[
            pytest.param(s, "clickhouse", "service_healthy", id=f"{s} needs clickhouse")
            for s in ("sink",)
        ],
    ],
)
def test_start_order(service: str, needs: str, condition: str) -> None:
    assert SERVICES[service]["depends_on"][needs]["condition"] == condition


@pytest.mark.parametrize(
    ("stage", "name"),
    [
        ("decide", "FANGXIAN_KAFKA_BOOTSTRAP"),
        ("decide", "FANGXIAN_PSEUDONYM_KEY"),
        ("sink", "FANGXIAN_KAFKA_BOOTSTRAP"),
        ("sink", "FANGXIAN_CLICKHOUSE_URL"),
        ("sink", "FANGXIAN_PSEUDONYM_KEY"),
    ],
)
def test_each_stage_gets_the_settings_it_needs(stage: str, name: str) -> None:
    assert env(stage).get(name)


@pytest.mark.parametrize("service", ["topics", "acl", "migrate", *STAGES, "dispatch"])
def test_every_fangxian_variable_names_a_setting(service: str) -> None:
    known = SETTINGS_ENV | {name + "_FILE" for name in SETTINGS_ENV}
    unknown = {
        k for k in env(service) if k.startswith("FANGXIAN_") and not ACL_PASSWORD_ENV.match(k)
    } - known
    assert not unknown, f"{service} sets variables no Settings field reads: {unknown}"


def default_of(value: str) -> str:
    """``${NAME:-default}`` -> ``default`` (what compose uses when NAME is not set)."""
    found = re.fullmatch(r"\$\{[A-Z_]+:-(.*)\}", value)
    return found.group(1) if found else value


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_reaches_services_by_their_compose_names(stage: str) -> None:
    worker = env(stage)
    assert default_of(worker["FANGXIAN_KAFKA_BOOTSTRAP"]).split(":")[0] in SERVICES
    if "FANGXIAN_CLICKHOUSE_URL" in worker:
        for given in ({}, cluster_env()):
            hosts = interpolate(worker["FANGXIAN_CLICKHOUSE_URL"], given).split("@")[1]
            for host in hosts.split("/")[0].split(","):
                assert host.split(":")[0] in SERVICES, host


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_no_secret_is_written_into_the_compose_file(service: str) -> None:
    for name, value in env(service).items():
        if SECRET_NAME.search(name):
            assert INTERPOLATION.match(value), f"{service}.{name} must come from .env"
    url = env(service).get("FANGXIAN_CLICKHOUSE_URL")
    if url:
        password = url.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
        assert INTERPOLATION.match(password)


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_scales_with_replicas(stage: str) -> None:
    worker = SERVICES[stage]
    assert "replicas" in worker["deploy"]
    assert "container_name" not in worker
    assert not worker.get("ports"), "published ports would clash between replicas"


@pytest.mark.parametrize("stage", STAGES)
def test_prometheus_scrapes_every_stage_replica_on_its_metrics_port(stage: str) -> None:
    metrics_port = int(env(stage)[STAGES[stage]])
    worker_targets = [
        (name, sd["port"])
        for job in PROMETHEUS["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    ]
    assert (stage, metrics_port) in worker_targets
    assert str(metrics_port) in SERVICES[stage]["healthcheck"]["test"][-1]
    # another container can only scrape it if the stage listens beyond its own loopback
    assert env(stage)["FANGXIAN_BIND_HOST"] == "0.0.0.0"


@pytest.mark.parametrize(
    ("service", "mount"),
    [
        (service, mount)
        for service, spec in sorted(SERVICES.items())
        for mount in spec.get("volumes", [])
        if str(mount).startswith("./")
    ],
)
def test_mounted_config_files_exist(service: str, mount: str) -> None:
    for given in ({}, cluster_env()):  # a path may name a file by a profile's variable
        path = interpolate(mount, given).split(":")[0]
        assert (ROOT / path).exists(), f"{service} mounts a missing {path}"


@pytest.mark.parametrize(
    ("service", "port"),
    [
        (service, str(port))
        for service, spec in sorted(SERVICES.items())
        for port in spec.get("ports", [])
    ],
)
def test_host_ports_default_to_loopback(service: str, port: str) -> None:
    assert port.startswith(("127.0.0.1:", "${FANGXIAN_BIND_ADDRESS:-127.0.0.1}:")), port


def _kafka_properties(**extra: str) -> dict[str, str]:
    """The server.properties the compose Kafka starts with (compose-start.sh --print-config)."""
    result = subprocess.run(
        ["bash", str(KAFKA_START), "--print-config"],
        env={"PATH": os.environ["PATH"], "KAFKA_ADMIN_PASSWORD": "x1", **extra},
        capture_output=True,
        text=True,
        check=True,
    )
    pairs = (line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return {key: value for key, value in pairs}


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="default: SASL_PLAINTEXT everywhere"),
        pytest.param({"KAFKA_EXTERNAL_TLS_PEM": "/tls/server.pem"}, id="external TLS"),
    ],
)
def test_kafka_has_no_plaintext_listener(extra: dict[str, str]) -> None:
    props = _kafka_properties(**extra)
    protocols = dict(pair.split(":") for pair in props["listener.security.protocol.map"].split(","))
    listeners = {item.split("://")[0] for item in props["listeners"].split(",")}
    assert listeners == set(protocols), "every listener has a protocol"
    assert all(p in {"SASL_PLAINTEXT", "SASL_SSL"} for p in protocols.values()), protocols
    assert "PLAINTEXT://" not in props["listeners"]
    if extra:
        assert protocols["EXTERNAL"] == "SASL_SSL"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin"
    assert "x1" not in "".join(props.values()), "--print-config must not show the password"


def test_only_the_authenticated_external_listener_is_published() -> None:
    props = _kafka_properties()
    published = {str(port).rsplit(":", 2)[-1] for port in SERVICES["kafka"]["ports"]}
    external_port = props["listeners"].split("EXTERNAL://:")[1].split(",")[0]
    assert published == {external_port}
    assert "kafka-data:/var/lib/kafka/data" in SERVICES["kafka"]["volumes"]


def test_kafka_refuses_to_start_without_an_admin_password() -> None:
    result = subprocess.run(
        ["bash", str(KAFKA_START)],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "KAFKA_ADMIN_PASSWORD" in result.stderr


@pytest.mark.parametrize(
    ("service", "user"),
    [
        pytest.param("topics", "admin", id="topics logs in as the super user"),
        pytest.param("acl", "admin", id="acl logs in as the super user"),
        pytest.param("decide", "decide", id="the decide stage is the decide principal, not admin"),
        pytest.param("sink", "sink", id="the sink stage is the sink principal"),
        pytest.param("dispatch", "dispatch", id="the dispatcher is the dispatch principal"),
        pytest.param("console", "console", id="the staff console is the console principal"),
    ],
)
def test_fangxian_services_log_in_to_kafka(service: str, user: str) -> None:
    variables = env(service)
    assert variables["FANGXIAN_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert variables["FANGXIAN_KAFKA_USERNAME"] == user
    assert INTERPOLATION.match(variables["FANGXIAN_KAFKA_PASSWORD"])


@pytest.mark.parametrize(
    ("service", "user"),
    [
        pytest.param("sink", "fangxian_sink", id="the sink stage inserts as fangxian_sink"),
        pytest.param(
            "dispatch", "fangxian_sink", id="the dispatcher's action sink inserts as fangxian_sink"
        ),
        pytest.param("migrate", "fangxian_migrate", id="migrations run as fangxian_migrate"),
        pytest.param(
            "console", "fangxian_console", id="the console reads and audits as fangxian_console"
        ),
    ],
)
def test_clickhouse_users_per_service(service: str, user: str) -> None:
    url = env(service)["FANGXIAN_CLICKHOUSE_URL"]
    assert url.split("//", 1)[1].split(":", 1)[0] == user


def test_acl_service_sets_every_role_password() -> None:
    from infra.acl import Principals

    roles = {k.removeprefix("FANGXIAN_ACL_PASSWORD_").lower() for k in env("acl") if "ACL_" in k}
    assert roles == set(Principals().roles())
    for stage in ("decide", "sink", "console"):
        assert SERVICES[stage]["depends_on"]["acl"]["condition"] == (
            "service_completed_successfully"
        )


@pytest.mark.parametrize("name", DISPATCH_ENV)
def test_the_dispatcher_gets_its_keys_and_clickhouse(name: str) -> None:
    assert env("dispatch").get(name)


@pytest.mark.parametrize(
    ("need", "condition"),
    [
        pytest.param("kafka", "service_healthy", id="a healthy kafka"),
        pytest.param("topics", "service_completed_successfully", id="the topics"),
        pytest.param("acl", "service_completed_successfully", id="its principal and ACLs"),
        pytest.param("migrate", "service_completed_successfully", id="the alert_actions table"),
    ],
)
def test_the_dispatcher_starts_after(need: str, condition: str) -> None:
    assert SERVICES["dispatch"]["depends_on"][need]["condition"] == condition


def test_the_dispatcher_publishes_only_its_ack_endpoint_on_the_bind_address() -> None:
    ack_port = env("dispatch")["FANGXIAN_ACK_PORT"]
    assert SERVICES["dispatch"]["ports"] == [
        f"${{FANGXIAN_BIND_ADDRESS:-127.0.0.1}}:{ack_port}:{ack_port}"
    ]
    assert env("dispatch")["FANGXIAN_BIND_HOST"] == "0.0.0.0"
    assert "replicas" not in SERVICES["dispatch"].get("deploy", {}), "one ack port per host"


def test_the_decide_stage_has_no_clickhouse() -> None:
    """Gates never wait for ClickHouse: the decide service is given no ClickHouse at all."""
    assert "FANGXIAN_CLICKHOUSE_URL" not in env("decide")
    assert "clickhouse" not in SERVICES["decide"]["depends_on"]
    assert "clickhouse" in SERVICES["sink"]["depends_on"]


def test_env_example_names_every_secret_the_compose_file_needs_and_holds_none() -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    assert required <= set(example), required - set(example)
    assert all(value == "" for value in example.values()), "no values in the template"


def test_env_file_is_ignored_by_git() -> None:
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in ignored


def test_deploy_guide_lists_exactly_the_compose_services() -> None:
    documented = set(re.findall(r"^\|\s*`([a-z0-9_-]+)`\s*\|", DEPLOY_DOC, flags=re.MULTILINE))
    assert documented == set(SERVICES)


def test_deploy_guide_mentions_only_existing_services() -> None:
    mentioned = set(re.findall(r"docker compose logs ([a-z0-9_ -]+)", DEPLOY_DOC))
    names = {name for group in mentioned for name in group.split()}
    assert names <= set(SERVICES)


# ---- the `cluster` profile, Kafka part (issue 21): three KRaft nodes, topics replicated 3 / 2

CLUSTER_ENV_FILE = ROOT / "compose-cluster.env"
KAFKA_NODES = {"kafka": 1, "kafka-2": 2, "kafka-3": 3}


def cluster_env() -> dict[str, str]:
    """compose-cluster.env: what `--env-file compose-cluster.env` adds."""
    lines = CLUSTER_ENV_FILE.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ``${NAME:-default}`` with ``variables`` as the environment."""
    return re.sub(
        r"\$\{([A-Z_]+):-([^}]*)\}", lambda m: variables.get(m.group(1), m.group(2)), value
    )


@pytest.mark.parametrize(
    ("service", "profiles"),
    [
        pytest.param("kafka", None, id="node 1 runs in every profile"),
        pytest.param("kafka-2", ["cluster"], id="node 2 only in the cluster profile"),
        pytest.param("kafka-3", ["cluster"], id="node 3 only in the cluster profile"),
    ],
)
def test_the_cluster_profile_adds_two_kafka_nodes(service: str, profiles: list[str]) -> None:
    spec = SERVICES[service]
    assert spec.get("profiles") == profiles
    assert spec["image"] == SERVICES["kafka"]["image"]
    assert spec["entrypoint"] == SERVICES["kafka"]["entrypoint"]
    assert spec["healthcheck"]["test"], service
    assert f"--bootstrap-server {service}:9092" in spec["healthcheck"]["test"][-1]
    assert any(str(v).endswith(":/var/lib/kafka/data") for v in spec["volumes"])


def test_each_kafka_node_has_its_own_data_id_and_published_port() -> None:
    volumes = {
        name: next(v for v in SERVICES[name]["volumes"] if v.endswith(":/var/lib/kafka/data"))
        for name in KAFKA_NODES
    }
    assert len(set(volumes.values())) == len(KAFKA_NODES)
    assert all(v.split(":")[0] in COMPOSE["volumes"] for v in volumes.values())
    ids = {name: env(name)["KAFKA_NODE_ID"] for name in KAFKA_NODES}
    assert ids == {name: str(n) for name, n in KAFKA_NODES.items()}
    published = [str(SERVICES[name]["ports"][0]).rsplit(":", 2)[-2] for name in KAFKA_NODES]
    advertised = [env(name)["KAFKA_EXTERNAL_PORT"] for name in KAFKA_NODES]
    assert published == advertised and len(set(published)) == len(KAFKA_NODES)


@pytest.mark.parametrize("service", list(KAFKA_NODES))
def test_in_the_cluster_every_node_knows_the_three_voters_and_replicates_3_2(
    service: str,
) -> None:
    variables = env(service)
    nodes = interpolate(variables["KAFKA_NODES"], cluster_env())
    props = _kafka_properties(
        KAFKA_NODES=nodes,
        KAFKA_NODE_ID=variables["KAFKA_NODE_ID"],
        KAFKA_EXTERNAL_PORT=variables["KAFKA_EXTERNAL_PORT"],
    )
    assert props["node.id"] == variables["KAFKA_NODE_ID"]
    assert props["controller.quorum.voters"] == ",".join(
        f"{n}@{name}:9093" for name, n in KAFKA_NODES.items()
    )
    assert props["advertised.listeners"].startswith(f"INTERNAL://{service}:9092,")
    assert props["advertised.listeners"].endswith(f":{variables['KAFKA_EXTERNAL_PORT']}")
    for key, value in {
        "default.replication.factor": "3",
        "min.insync.replicas": "2",
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
    }.items():
        assert props[key] == value, key


def test_one_node_alone_keeps_its_internal_topics_on_itself() -> None:
    props = _kafka_properties()
    assert props["controller.quorum.voters"] == "1@kafka:9093"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"


@pytest.mark.parametrize(
    ("variables", "bootstrap", "replicas"),
    [
        pytest.param({}, ["kafka:9092"], ("1", "1"), id="default: one broker, topics 1 / 1"),
        pytest.param(
            "cluster",
            ["kafka:9092", "kafka-2:9092", "kafka-3:9092"],
            ("3", "2"),
            id="cluster: every node listed, topics 3 / 2",
        ),
    ],
)
def test_services_follow_the_profile_in_bootstrap_and_replication(
    variables: dict[str, str] | str, bootstrap: list[str], replicas: tuple[str, str]
) -> None:
    given = cluster_env() if variables == "cluster" else {}
    for service in ("topics", "acl", *STAGES, "dispatch", "edge", "console"):
        worker = {k: interpolate(v, given) for k, v in env(service).items()}
        assert worker["FANGXIAN_KAFKA_BOOTSTRAP"].split(",") == bootstrap, service
        assert all(host.split(":")[0] in SERVICES for host in bootstrap)
        assert (
            worker["FANGXIAN_REPLICATION_FACTOR"],
            worker["FANGXIAN_MIN_INSYNC_REPLICAS"],
        ) == replicas, service
    assert given.get("COMPOSE_PROFILES", "cluster" if given else "") == ("cluster" if given else "")


def test_the_cluster_env_file_holds_no_secret() -> None:
    assert not [k for k in cluster_env() if SECRET_NAME.search(k)]
    assert "--env-file compose-cluster.env" in DEPLOY_DOC


# ---- the `cluster` profile, ClickHouse part (issue 21): 2 shards × 2 replicas and a 3-node
# ClickHouse Keeper; every node configured from infra/clickhouse/cluster/

CLUSTER_XML = ET.parse(ROOT / "infra/clickhouse/cluster/cluster.xml").getroot()
KEEPER_XML = ET.parse(ROOT / "infra/clickhouse/cluster/keeper.xml").getroot()
CLICKHOUSE_NODES = ["clickhouse", "clickhouse-s1r2", "clickhouse-s2r1", "clickhouse-s2r2"]
KEEPERS = ["clickhouse-keeper-1", "clickhouse-keeper-2", "clickhouse-keeper-3"]


def remote_shards() -> list[list[str]]:
    """cluster.xml's one cluster: the replicas' host names, shard by shard."""
    (cluster,) = CLUSTER_XML.find("remote_servers") or []
    return [
        [r.findtext("host") or "" for r in shard.findall("replica")]
        for shard in cluster.findall("shard")
    ]


def node_config(service: str, given: dict[str, str]) -> str:
    """The file a ClickHouse node mounts as config.d/cluster.xml (with ``given`` variables)."""
    (mount,) = [
        interpolate(str(v), given)
        for v in SERVICES[service]["volumes"]
        if str(v).endswith(":/etc/clickhouse-server/config.d/cluster.xml:ro")
    ]
    return mount.split(":")[0]


@pytest.mark.parametrize(
    ("service", "profiles"),
    [
        pytest.param(
            "clickhouse", None, id="clickhouse runs in every profile (shard 01 replica 1)"
        ),
        *[
            pytest.param(s, ["cluster"], id=f"{s} only in the cluster profile")
            for s in CLICKHOUSE_NODES[1:] + KEEPERS
        ],
    ],
)
def test_the_cluster_profile_adds_three_clickhouse_nodes_and_keeper(
    service: str, profiles: list[str] | None
) -> None:
    spec = SERVICES[service]
    assert spec.get("profiles") == profiles
    assert spec["hostname"] == service
    assert spec["healthcheck"]["test"]
    server, keeper = SERVICES["clickhouse"]["image"], spec["image"]
    if service in KEEPERS:  # ClickHouse Keeper of the server's release
        assert keeper.split(":") == ["clickhouse/clickhouse-keeper", server.split(":")[1]]
    else:
        assert keeper == server


def test_the_nodes_are_the_shards_and_replicas_of_cluster_xml() -> None:
    shards = remote_shards()
    assert shards == [CLICKHOUSE_NODES[:2], CLICKHOUSE_NODES[2:]]
    for number, hosts in enumerate(shards, start=1):
        for host in hosts:
            variables = env(host)
            assert variables["CLICKHOUSE_SHARD"] == f"{number:02d}", host
            assert variables["CLICKHOUSE_REPLICA"] == host  # unique in the whole cluster
            # the same users and grants on every node (a forwarded query runs as its sender)
            assert variables["CLICKHOUSE_INTERSERVER_SECRET"].startswith(
                "${CLICKHOUSE_INTERSERVER_SECRET:?"
            )
            assert node_config(host, cluster_env()) == "./infra/clickhouse/cluster/cluster.xml"
    for cluster in CLUSTER_XML.find("remote_servers") or []:
        assert cluster.find("secret").get("from_env") == "CLICKHOUSE_INTERSERVER_SECRET"  # type: ignore[union-attr]
        assert {s.findtext("internal_replication") for s in cluster.findall("shard")} == {"true"}
    macros = CLUSTER_XML.find("macros")
    assert macros is not None
    assert {m.tag: m.get("from_env") for m in macros} == {
        "shard": "CLICKHOUSE_SHARD",
        "replica": "CLICKHOUSE_REPLICA",
    }
    assert CLUSTER_XML.findtext("distributed_ddl/path")


def test_one_clickhouse_alone_has_no_cluster_config() -> None:
    assert node_config("clickhouse", {}) == "./infra/clickhouse/cluster/none.xml"
    assert len(ET.parse(ROOT / "infra/clickhouse/cluster/none.xml").getroot()) == 0


def test_every_node_has_its_own_data_volume_and_the_same_users() -> None:
    def data(service: str, path: str) -> str:
        (volume,) = [str(v) for v in SERVICES[service]["volumes"] if str(v).endswith(path)]
        return volume.split(":")[0]

    volumes = [data(s, ":/var/lib/clickhouse") for s in CLICKHOUSE_NODES]
    volumes += [data(s, ":/var/lib/clickhouse-keeper") for s in KEEPERS]
    assert len(set(volumes)) == len(volumes)
    assert all(v in COMPOSE["volumes"] for v in volumes)

    def users(service: str) -> set[str]:
        return {str(v) for v in SERVICES[service]["volumes"] if "/users.d/" in str(v)}

    assert users("clickhouse")
    assert all(users(s) == users("clickhouse") for s in CLICKHOUSE_NODES)
    for node in CLICKHOUSE_NODES[1:]:
        assert set(SERVICES[node]["depends_on"]) == set(KEEPERS)
        assert "ports" not in SERVICES[node]  # BI tools use `clickhouse`'s published ports


def test_the_keeper_quorum_is_the_three_keeper_services() -> None:
    raft = KEEPER_XML.find("keeper_server/raft_configuration")
    assert raft is not None
    servers = {s.findtext("hostname"): s.findtext("id") for s in raft.findall("server")}
    assert servers == {k: env(k)["KEEPER_SERVER_ID"] for k in KEEPERS}
    assert KEEPER_XML.find("keeper_server/server_id").get("from_env") == "KEEPER_SERVER_ID"  # type: ignore[union-attr]
    port = KEEPER_XML.findtext("keeper_server/tcp_port")
    zookeeper = [
        (n.findtext("host"), n.findtext("port")) for n in CLUSTER_XML.findall("zookeeper/node")
    ]
    assert zookeeper == [(k, port) for k in KEEPERS]


@pytest.mark.parametrize(
    ("variables", "hosts", "cluster"),
    [
        pytest.param({}, ["clickhouse"], "", id="default: one server, no cluster"),
        pytest.param("cluster", CLICKHOUSE_NODES, "fangxian", id="cluster: four nodes, ON CLUSTER"),
    ],
)
def test_clickhouse_clients_follow_the_profile(
    variables: dict[str, str] | str, hosts: list[str], cluster: str
) -> None:
    given = cluster_env() if variables == "cluster" else {}
    if cluster:  # the cluster the servers define is the one the clients name
        assert [c.tag for c in CLUSTER_XML.find("remote_servers") or []] == [cluster]
    for service in ("migrate", "sink", "dispatch", "console"):
        worker = {k: interpolate(v, given) for k, v in env(service).items()}
        listed = worker["FANGXIAN_CLICKHOUSE_URL"].split("@")[1].split("/")[0].split(",")
        assert [h.split(":")[0] for h in listed] == hosts, service
        assert worker["FANGXIAN_CLICKHOUSE_CLUSTER"] == cluster, service
        assert worker["FANGXIAN_CLICKHOUSE_INSERT"] in ("distributed", "shards")
        assert worker["FANGXIAN_CLICKHOUSE_SHARD_BY"] in ("community", "county")
    for node in CLICKHOUSE_NODES[1:]:  # migrate's ON CLUSTER waits for every node
        assert SERVICES["migrate"]["depends_on"][node] == {
            "condition": "service_healthy",
            "required": False,
        }
