"""Coverage-guided fuzzing of the MQTT adapter (atheris).

Input layout: the first byte picks the topic (a pass topic, others that are not), the rest is
the payload. Allowed out of ``parse``: ``MalformedRequest``; every parsed pass must answer with
JSON that names the pass by its ``seq`` and carries nothing else of it.

    python tests/fuzz/fuzz_edge_mqtt.py tests/fuzz/corpus/edge_mqtt -runs=100000 -seed=1
"""

from __future__ import annotations

import json
import sys

import atheris

with atheris.instrument_imports(include=["fangxian.edge"]):
    from fangxian.edge.adapter import DeviceRequest
    from fangxian.edge.adapters.mqtt import MqttAdapter

from edge_checks import exercise

ADAPTER = MqttAdapter()
TOPICS = (
    "fangxian/53110105MEA0000013/GW-EAST-01/pass",
    "fangxian/53110105MEA0000013/GW-EAST-01/decision",
    "fangxian/53110105MEA0000013/+/pass",
    "fangxian//GW/pass",
)
ANSWER_KEYS = {"seq", "decision", "open", "source", "reasons", "message_zh", "message_en"}


def test_one_input(data: bytes) -> None:
    if not data:
        return
    topic = TOPICS[data[0] % len(TOPICS)]
    request = DeviceRequest("PUBLISH", topic, {}, {"content-type": "application/json"}, data[1:])
    response = exercise(ADAPTER, request)
    if response is None:
        return
    body = json.loads(response.body)
    serials = [e.event_serial for e in ADAPTER.parse(request).events]
    # the answer names passes by their seq and carries nothing else of them (no identifier)
    if "ack" in body:
        assert set(body) == {"ack"} and body["ack"] == serials
    else:
        assert set(body) == ANSWER_KEYS and [body["seq"]] == serials


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
