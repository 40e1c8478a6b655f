"""Roster files → records, with line numbers on errors; contacts sealed at the ingest point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fangxian.ingest.roster_files import load_duty, load_escalation, load_staff
from schemas import Codec, contract
from streams.dispatch.contacts import ContactBox

BOX = ContactBox("unit-test-roster-key")
C = "91350100M000100Y43"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_staff_csv_with_chinese_headers_is_sealed_and_encodes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "staff.csv",
        "人员编号,社区代码,显示名,角色,企业微信账号,手机号\n"
        f"st-01,{C},东门 王师傅,门岗,wangshifu,138 0000 0001\n"
        f"st-02,{C},网格员 李姐,网格员,,\n",
    )
    result = load_staff(path, BOX, now_ms=1)
    assert result.errors == []
    assert [w.line for w in result.warnings] == [3], "no contact at all is a warning"
    first = result.records[0]
    assert first["role"] == "GATE_GUARD" and b"13800000001" not in first["contacts"]
    assert BOX.open(first["contacts"], "st-01", C).phone == "13800000001"
    Codec().encode("StaffMember", first)


@pytest.mark.parametrize(
    ("row", "field"),
    [
        pytest.param(f"st-01,{C},王,门岗,13800000001x", "phone", id="a bad mobile"),
        pytest.param("st-01,ABC,王,门岗,13800000001", "community_id", id="a bad community code"),
        pytest.param(f"st-01,{C},王,厨师,13800000001", "role", id="an unknown role"),
        pytest.param(f",{C},王,门岗,13800000001", "staff_id", id="no staff id"),
    ],
)
def test_staff_errors_name_line_and_field_and_mask_the_value(
    tmp_path: Path, row: str, field: str
) -> None:
    path = write(tmp_path, "s.csv", "staff_id,community_id,display_name,role,phone\n" + row + "\n")
    result = load_staff(path, BOX, now_ms=1)
    assert [(e.line, e.field) for e in result.errors] == [(2, field)]
    assert "13800000001" not in str(result.errors[0])


def test_duty_csv(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "duty.csv",
        "班次编号,社区代码,人员编号,级别,门岗,预警类型,日期,开始,结束\n"
        f"n1,{C},st-01,1,east-gate;west-gate,,每天,20:00,08:00\n"
        f"d1,{C},st-02,2,,FEVER_CONFIRMED,1-5,08:00,20:00\n"
        f"x1,{C},st-03,1,,,2020-02-15;2020-02-16,08:00,20:00\n"
        f"bad,{C},st-04,1,,,1-5,25:00,08:00\n"
        f"bad2,{C},st-04,0,,,1-5,08:00,09:00\n"
        f"bad3,{C},st-04,1,,TELEPORT,,08:00,09:00\n",
    )
    result = load_duty(path, alert_types=contract.ALERT_TYPES, now_ms=1)
    assert [(e.line, e.field) for e in result.errors] == [
        (5, "start"),
        (6, "level"),
        (7, "alert_types"),
    ]
    night, weekdays, dated = result.records
    assert (night["gates"], night["start_minute"], night["end_minute"]) == (
        ["east-gate", "west-gate"],
        1200,
        480,
    )
    assert weekdays["weekdays"] == [1, 2, 3, 4, 5] and weekdays["level"] == 2
    assert dated["dates"] == [18307, 18308]
    for record in result.records:
        Codec().encode("DutyShift", record)


def test_escalation_json_list_errors_carry_the_line_of_the_policy(tmp_path: Path) -> None:
    good = contract.examples("EscalationPolicy")[0]
    bad = {
        **good,
        "steps": [
            {"level": 1, "after_s": 600, "channels": []},
            {"level": 2, "after_s": 0, "channels": ["nope"]},
        ],
    }
    text = json.dumps([good, bad], indent=2)
    path = write(tmp_path, "esc.json", text)
    result = load_escalation(path, channels={"wecom:east-gate", "dingtalk:street-office"}, now_ms=1)
    assert len(result.records) == 1
    second_line = text.split("\n").index("  {", 2) + 1
    assert {e.line for e in result.errors} == {second_line}
    assert {e.field for e in result.errors} == {"steps[1]"}
    Codec().encode("EscalationPolicy", result.records[0])


def test_escalation_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "esc.json", '{\n  "community_id": "x",\n  oops\n}')
    (error,) = load_escalation(path, channels=None, now_ms=1).errors
    assert error.line == 3


def test_the_staff_example_decrypts_with_the_example_key() -> None:
    (example,) = contract.examples("StaffMember")
    contacts = ContactBox("example-roster-key").open(
        example["contacts"], example["staff_id"], example["community_id"]
    )
    assert contacts.wecom_userid == "wangshifu"
