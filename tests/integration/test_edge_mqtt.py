"""The MQTT layout end to end on a real broker (Debian's mosquitto, started for this module on a
free loopback port, with a password file and the ACL docs/edge.md gives a deployment): the
fake gateway publishes passes, the edge's MQTT transport hands them to a request handler and
publishes its answers.

The handler here stands in for the edge service: it runs the MQTT adapter and decides by a
fixed rule (a fever is RECHECK, else ALLOW). What is under test is the transport, the adapter
and the layout the gateway speaks, not the decide stage.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiomqtt
import pytest

from fangxian.edge.adapter import (
    DeviceRequest,
    DeviceResponse,
    MalformedRequest,
    RefusalReason,
    Verdict,
)
from fangxian.edge.adapters.mqtt import MqttAdapter
from fangxian.edge.mqtt_transport import MqttTransportConfig, run_mqtt_transport
from infra.fake_mqtt_gateway import FakeMqttGateway
from infra.mosquitto import MosquittoBroker

COMMUNITY = "53110105MEA0000013"
EDGE_USER = "fangxian-edge"
PASSWORDS = {EDGE_USER: "edge-pw-for-tests", "GW-A": "gw-a-pw", "GW-B": "gw-b-pw"}
# the deployment's ACL (docs/edge.md): the edge reads every pass and writes every decision; a
# gateway (user name = its serial) writes only its own pass topic and reads only its decisions
ACL = f"""\
user {EDGE_USER}
topic read fangxian/+/+/pass
topic write fangxian/+/+/decision

pattern write fangxian/+/%u/pass
pattern read fangxian/+/%u/decision
"""
CARD = "C0FFEE5678"


@pytest.fixture(scope="module")
def broker() -> Iterator[MosquittoBroker]:
    with MosquittoBroker(users=PASSWORDS, acl=ACL) as started:
        yield started


class StandInService:
    """Parse with the MQTT adapter, decide by a fixed rule, remember what reached it."""

    def __init__(self) -> None:
        self.adapter = MqttAdapter()
        self.seen: list[DeviceRequest] = []

    async def handle(self, request: DeviceRequest) -> DeviceResponse:
        self.seen.append(request)
        try:
            parsed = self.adapter.parse(request)
        except MalformedRequest:
            return self.adapter.refuse(RefusalReason.MALFORMED)
        if parsed.identity.serial not in ("GW-A", "GW-B"):
            return self.adapter.refuse(RefusalReason.UNKNOWN_DEVICE)
        verdicts = [
            Verdict(
                e.event_serial,
                "RECHECK" if (e.temperature_c or 0) >= 37.3 else "ALLOW",
                reasons=("FEVER_RECHECK",) if (e.temperature_c or 0) >= 37.3 else (),
            )
            for e in parsed.events
        ]
        return self.adapter.answer(parsed, verdicts if parsed.delivery == "response" else ())


def edge_config(broker: MosquittoBroker, client_id: str) -> MqttTransportConfig:
    return MqttTransportConfig(
        host=broker.host,
        port=broker.port,
        username=EDGE_USER,
        password=PASSWORDS[EDGE_USER],
        client_id=client_id,
        reconnect_min_s=0.1,
    )


async def with_edge(
    broker: MosquittoBroker,
    service: StandInService,
    body: Callable[[], Awaitable[Any]],
    client_id: str,
) -> Any:
    connected = asyncio.Event()
    transport = asyncio.create_task(
        run_mqtt_transport(edge_config(broker, client_id), service.handle, connected=connected)
    )
    try:
        await asyncio.wait_for(connected.wait(), timeout=10)
        return await body()
    finally:
        transport.cancel()
        with pytest.raises(asyncio.CancelledError):
            await transport


def gateway(broker: MosquittoBroker, device: str) -> FakeMqttGateway:
    return FakeMqttGateway(
        broker.host, broker.port, community=COMMUNITY, device=device, password=PASSWORDS[device]
    )


def test_a_pass_gets_its_decision_on_the_decision_topic(broker: MosquittoBroker) -> None:
    service = StandInService()

    async def body() -> tuple[Any, Any]:
        async with gateway(broker, "GW-A") as gw:
            normal = await gw.scan(method="CARD", identifier=CARD, temperature_c=36.5)
            fever = await gw.scan(method="CARD", identifier=CARD, temperature_c=38.2)
            return normal, fever

    normal, fever = asyncio.run(with_edge(broker, service, body, "edge-pass"))
    assert normal is not None and fever is not None, "no decision came back"
    assert (normal["seq"], normal["decision"], normal["open"]) == ("1", "ALLOW", True)
    assert (fever["seq"], fever["decision"], fever["open"]) == ("2", "RECHECK", False)
    assert fever["reasons"] == ["FEVER_RECHECK"]
    assert CARD not in json.dumps([normal, fever])  # the raw card number never goes back
    assert [r.path for r in service.seen] == [f"fangxian/{COMMUNITY}/GW-A/pass"] * 2
    assert service.seen[0].method == "PUBLISH"


def test_a_malformed_pass_is_refused_on_the_decision_topic(broker: MosquittoBroker) -> None:
    service = StandInService()

    async def body() -> Any:
        async with gateway(broker, "GW-A") as gw:
            await gw.publish(b'{"seq": 1, "method": "PALM"}')
            return await gw.answer_for(None, 5)

    answer = asyncio.run(with_edge(broker, service, body, "edge-malformed"))
    assert answer == {"error": "malformed"}


def test_the_acl_keeps_a_gateway_to_its_own_topics(broker: MosquittoBroker) -> None:
    """GW-A publishing on GW-B's pass topic reaches nobody; its own topic does (control)."""
    service = StandInService()

    async def body() -> Any:
        async with gateway(broker, "GW-A") as gw:
            forged = {"seq": 99, "method": "CARD", "id": CARD}
            await gw.publish(forged, topic=f"fangxian/{COMMUNITY}/GW-B/pass")
            await asyncio.sleep(1.0)
            forged_reached = len(service.seen)
            control = await gw.scan(method="CARD", identifier=CARD)
            return forged_reached, control

    forged_reached, control = asyncio.run(with_edge(broker, service, body, "edge-acl"))
    assert forged_reached == 0
    assert control is not None and control["decision"] == "ALLOW"
    assert [r.path for r in service.seen] == [f"fangxian/{COMMUNITY}/GW-A/pass"]


def test_passes_published_while_the_edge_is_away_are_delivered_when_it_returns(
    broker: MosquittoBroker,
) -> None:
    """The edge's session is persistent: QoS 1 passes wait in the broker for it."""
    service = StandInService()
    client_id = "edge-persistent"

    async def scenario() -> list[str]:
        # the first connection makes the persistent subscription
        await with_edge(broker, service, lambda: asyncio.sleep(0.1), client_id)
        async with gateway(broker, "GW-B") as gw:
            away = await gw.scan(method="FACE", identifier="R1", wait_s=0.5)
            assert away is None  # nobody answered: the gateway kept it
            assert len(gw.backlog) == 1

            async def after_return() -> list[str]:
                for _ in range(50):
                    if service.seen:
                        break
                    await asyncio.sleep(0.1)
                return await gw.replay_backlog(wait_s=5)

            acked = await with_edge(broker, service, after_return, client_id)
            assert gw.backlog == []
            return acked

    acked = asyncio.run(scenario())
    # the live pass published while the edge was away reached it after it came back ...
    assert service.seen and json.loads(service.seen[0].body).get("seq") == 1
    # ... and the gateway's own replay of that pass was acknowledged
    assert acked == ["1"]


def test_an_unknown_user_cannot_connect(broker: MosquittoBroker) -> None:
    async def connect() -> None:
        async with aiomqtt.Client(broker.host, broker.port, username="GW-Z", password="x"):
            pass

    with pytest.raises(aiomqtt.MqttError):
        asyncio.run(connect())


def test_the_edge_service_serves_mqtt_gateways_through_kafka(
    broker: MosquittoBroker, topics: Any, tmp_path: Any
) -> None:
    """`fangxian edge` with FANGXIAN_EDGE_MQTT_HOST set: the real service subscribes, a gateway's
    pass becomes a pseudonymised GateScan in Kafka (through the outbox) and the gateway gets an
    answer on its decision topic. No decide stage runs here, so the answer is the fallback
    policy's (an unknown card: DENY) within the register's timeout; an unregistered gateway is
    refused and produces nothing. Control: the same service without the MQTT setting never
    answers the gateway."""
    from kafka import KafkaConsumer

    from fangxian.edge.register import DeviceEntry, Register
    from fangxian.edge.service import EdgeConfig, EdgeService
    from schemas import Codec

    settings = topics.replace(pseudonym_key="edge-mqtt-test-key")
    register = Register(
        [
            DeviceEntry(
                "gw-a", "mqtt", community_id=COMMUNITY, gate_id="east", direction="IN",
                serial="GW-A", timeout_ms=1500, auth="none",
            )
        ]
    )  # fmt: skip

    async def run(with_mqtt: bool) -> tuple[Any, Any, float]:
        config = EdgeConfig(
            port=0,
            metrics_port=-1,
            outbox_path=str(tmp_path / f"outbox-{with_mqtt}.sqlite"),
            answer_margin_ms=200,
            mqtt_host=broker.host if with_mqtt else "",
            mqtt_port=broker.port,
            mqtt_username=EDGE_USER,
            mqtt_password=PASSWORDS[EDGE_USER],
            mqtt_client_id=f"edge-service-{with_mqtt}",
        )
        service = EdgeService(settings, config, register)
        await service.start()
        try:
            if with_mqtt:
                await asyncio.wait_for(service.mqtt_connected.wait(), timeout=10)
            async with gateway(broker, "GW-A") as gw:
                began = asyncio.get_running_loop().time()
                fever = await gw.scan(method="CARD", identifier=CARD, temperature_c=38.4)
                took = asyncio.get_running_loop().time() - began
            async with gateway(broker, "GW-B") as stranger:
                refused = await stranger.scan(method="CARD", identifier=CARD, wait_s=2.0)
            return fever, refused, took
        finally:
            await service.stop()

    fever, refused, took = asyncio.run(run(with_mqtt=True))
    assert fever is not None, "the gateway got no answer"
    # the fallback policy's answer: an unregistered card with a fever is refused, not let in
    assert (fever["decision"], fever["open"], fever["source"]) == (
        "DENY", False, "edge-fallback"
    ), fever  # fmt: skip
    assert took < 1.5, took  # inside the register's timeout
    assert refused == {"error": "unknown_device"}, refused
    assert CARD not in json.dumps([fever, refused])
    consumer = KafkaConsumer(
        settings.topics.gate_scans,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    codec = Codec()
    scans = [codec.decode("GateScan", m.value) for m in consumer]
    consumer.close()
    assert [(s["device_id"], s["temperature_c"]) for s in scans] == [("gw-a", 38.4)]
    assert CARD not in json.dumps(scans)
    # control: no MQTT setting, no subscription: the pass waits unanswered
    control, _, _ = asyncio.run(run(with_mqtt=False))
    assert control is None
