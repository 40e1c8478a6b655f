"""CSV registers → pseudonymised reference records (fangxian.ingest.reference_csv)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from fangxian.core.privacy import Pseudonymiser
from fangxian.ingest.reference_csv import LoadResult, load_passes, load_residents, load_vehicles

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
PSEUDONYMISER = Pseudonymiser(b"unit-test-key")
COMMUNITY = "55350102MA2Y0001XX"  # synthetic, valid GB 32100 code
ID_A = "11010519491231002X"
ID_B = "320106199003071234"


def example_cells(name: str) -> set[str]:
    """Every cell of an example CSV: IDs, names, phones, plates as written."""
    with (EXAMPLES / name).open(encoding="utf-8-sig", newline="") as f:
        return {cell for row in list(csv.reader(f))[1:] for cell in row if cell}


def personal_cells(name: str, columns: tuple[str, ...]) -> set[str]:
    with (EXAMPLES / name).open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    return {row[c] for row in rows for c in columns if row.get(c)}


def issues(result: LoadResult, kind: str = "errors") -> list[tuple[int, str]]:
    return [(e.line, e.field) for e in getattr(result, kind)]


def load_text(loader: str, text: str) -> LoadResult:
    fn = {"residents": load_residents, "passes": load_passes, "vehicles": load_vehicles}[loader]
    return fn(io.StringIO(text), PSEUDONYMISER, updated_at_ms=1)


# --- the example files ------------------------------------------------------------------------


def test_residents_example_rows_errors_and_warnings() -> None:
    result = load_residents(EXAMPLES / "residents-example.csv", PSEUDONYMISER, updated_at_ms=7)
    assert len(result.records) == 7
    assert issues(result) == [(9, "id_number"), (10, "status"), (11, "observation_start")]
    assert issues(result, "warnings") == [(8, "community_id")]
    assert all(r["updated_at"] == 7 for r in result.records)


def test_residents_example_keeps_no_personal_data() -> None:
    result = load_residents(EXAMPLES / "residents-example.csv", PSEUDONYMISER, updated_at_ms=0)
    text = repr(result)
    leaked = {
        cell
        for cell in personal_cells("residents-example.csv", ("身份证号", "姓名", "手机号"))
        if cell in text
    }
    assert leaked == set()


def test_residents_example_record_values() -> None:
    result = load_residents(EXAMPLES / "residents-example.csv", PSEUDONYMISER, updated_at_ms=0)
    first, _, observed = result.records[:3]
    assert first == {
        "resident_id": PSEUDONYMISER.token("resident", "350102195803120120"),
        "community_id": COMMUNITY,
        "household_id": PSEUDONYMISER.token("household", COMMUNITY + "1-101"),
        "status": "NORMAL",
        "observation_start": None,
        "key_groups": ["ELDERLY"],
        "face_consent": True,
        "updated_at": 0,
        "building_id": None,  # the example has no 楼栋 column
    }
    assert observed["status"] == "HOME_OBSERVATION"
    assert observed["observation_start"] == 18295  # 2020-02-03
    assert result.records[1]["key_groups"] == ["ELDERLY", "CHRONIC_DISEASE"]
    assert result.records[1]["household_id"] == first["household_id"]


def test_passes_example() -> None:
    result = load_passes(EXAMPLES / "passes-example.csv", PSEUDONYMISER, updated_at_ms=0)
    assert issues(result) == [(5, "host_id_number"), (6, "valid_until")]
    first, second, revoked = result.records
    assert first["valid_from"] == 1581292800000  # 2020-02-10 08:00 +08:00
    assert first["valid_until"] == 1581336000000  # 2020-02-10 20:00 +08:00
    assert second["valid_until"] == 1581523200000  # "2020-02-12": through the whole day
    assert first["pass_id"] == PSEUDONYMISER.token("pass", COMMUNITY + "V20200210001")
    assert first["host_resident_id"] == PSEUDONYMISER.token("resident", "350102195803120120")
    assert (first["revoked"], second["revoked"], revoked["revoked"]) == (False, False, True)
    assert [r["max_entries"] for r in result.records] == [1, 4, 10]
    assert "350102198308191040" not in repr(result)


def test_vehicles_example() -> None:
    result = load_vehicles(EXAMPLES / "vehicles-example.csv", PSEUDONYMISER, updated_at_ms=0)
    assert issues(result) == [(5, "plate"), (6, "owner_id_number")]
    assert result.records[0]["vehicle_id"] == PSEUDONYMISER.token("plate", "闽A2K7Q9")
    assert result.records[1]["valid_until"] is None
    assert result.records[2]["owner_resident_id"] is None
    text = repr(result)
    # only the community codes (not personal data) survive; the 京N row was rejected
    assert {c for c in example_cells("vehicles-example.csv") if c in text} == {COMMUNITY}


# --- formats and rules ------------------------------------------------------------------------


def test_english_headers_and_enum_names() -> None:
    result = load_text(
        "residents",
        "id_number,community_id,household_no,status,observation_start,key_groups,face_consent\n"
        f"{ID_A},{COMMUNITY},3-301,CENTRALIZED_ISOLATION,2020-02-01,PREGNANT;ELDERLY,true\n",
    )
    assert result.errors == []
    (record,) = result.records
    assert record["status"] == "CENTRALIZED_ISOLATION"
    assert record["key_groups"] == ["PREGNANT", "ELDERLY"]
    assert record["face_consent"] is True


def test_utf8_bom_and_gb18030_files(tmp_path: Path) -> None:
    text = f"身份证号,社区代码,户号,状态\n{ID_A},{COMMUNITY},1-101,正常\n"
    bom = tmp_path / "bom.csv"
    bom.write_text(text, encoding="utf-8-sig")
    gbk = tmp_path / "gbk.csv"
    gbk.write_text(text, encoding="gb18030")
    with_bom = load_residents(bom, PSEUDONYMISER, updated_at_ms=0)
    excel = load_residents(gbk, PSEUDONYMISER, updated_at_ms=0)
    assert with_bom.records == excel.records
    assert len(with_bom.records) == 1
    assert issues(excel, "warnings") == [(0, "file")]


@pytest.mark.parametrize(
    ("row", "line_field"),
    [
        pytest.param(f"{ID_A},{COMMUNITY},1,住院,,,是", None, id="住院 maps to HOSPITALIZED"),
        pytest.param(f"{ID_A},{COMMUNITY},1,,,,", None, id="blank status is NORMAL"),
        pytest.param(f"{ID_A[:17]}0,{COMMUNITY},1,正常,,,是", "id_number", id="bad ID check digit"),
        pytest.param(f"{ID_A},{COMMUNITY[:17]},1,正常,,,是", "community_id", id="17-char code"),
        pytest.param(f"{ID_A},{COMMUNITY},,正常,,,是", "household_no", id="no household number"),
        pytest.param(f"{ID_A},{COMMUNITY},1,失联,,,是", "status", id="unknown status"),
        pytest.param(
            f"{ID_A},{COMMUNITY},1,正常,2020-13-01,,是", "observation_start", id="bad month"
        ),
        pytest.param(f"{ID_A},{COMMUNITY},1,正常,,,也许", "face_consent", id="consent not yes/no"),
    ],
)
def test_resident_row_validation(row: str, line_field: str | None) -> None:
    header = "身份证号,社区代码,户号,状态,观察开始日期,重点人群,人脸授权\n"
    result = load_text("residents", header + row + "\n")
    assert issues(result) == ([] if line_field is None else [(2, line_field)])
    assert len(result.records) == (1 if line_field is None else 0)


def test_failing_community_check_char_is_kept_with_a_warning() -> None:
    code = COMMUNITY[:17] + "0"
    result = load_text("residents", f"id_number,community_id,household_no\n{ID_A},{code},1\n")
    assert [r["community_id"] for r in result.records] == [code]
    assert issues(result, "warnings") == [(2, "community_id")]


def test_messages_are_bilingual_and_mask_the_id() -> None:
    bad = ID_B[:17] + "0"
    result = load_text("residents", f"id_number,community_id,household_no\n{bad},{COMMUNITY},1\n")
    (error,) = result.errors
    assert "320106********1230" in error.message_zh
    assert "320106********1230" in error.message_en
    assert bad not in repr(result)


def test_duplicate_resident_is_an_error_on_the_second_line() -> None:
    result = load_text(
        "residents",
        f"id_number,community_id,household_no\n{ID_A},{COMMUNITY},1\n{ID_A.lower()},{COMMUNITY},2\n",
    )
    assert len(result.records) == 1
    assert issues(result) == [(3, "resident_id")]


def test_missing_required_column() -> None:
    result = load_text("residents", f"id_number,household_no\n{ID_A},1\n")
    assert result.records == []
    assert issues(result) == [(1, "community_id")]
    assert "社区代码" in result.errors[0].message_zh


def test_key_groups_unknown_item_warns() -> None:
    result = load_text(
        "residents",
        f"id_number,community_id,household_no,key_groups\n{ID_A},{COMMUNITY},1,孕妇、独居老人\n",
    )
    assert result.records[0]["key_groups"] == ["PREGNANT"]
    assert issues(result, "warnings") == [(2, "key_groups")]


def test_bad_phone_warns_and_phone_is_not_kept() -> None:
    result = load_text(
        "residents",
        f"id_number,community_id,household_no,phone\n{ID_A},{COMMUNITY},1,12345\n"
        f"{ID_B},{COMMUNITY},1,13812345678\n",
    )
    assert len(result.records) == 2
    assert issues(result, "warnings") == [(2, "phone")]
    assert "13812345678" not in repr(result)


def test_quoted_multiline_cell_keeps_line_numbers() -> None:
    result = load_text(
        "residents",
        f'id_number,community_id,household_no,备注\n{ID_A},{COMMUNITY},1,"two\nlines"\n'
        f"{ID_B[:17]}0,{COMMUNITY},1,\n",
    )
    assert len(result.records) == 1
    assert issues(result) == [(4, "id_number")]
    assert "two" not in repr(result)  # 备注 is not a known column: ignored


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "expected"),
    [
        pytest.param(
            "2020-02-10 08:00",
            "2020-02-10 20:00",
            (1581292800000, 1581336000000),
            id="local times in Asia/Shanghai",
        ),
        pytest.param(
            "2020/2/10 8:00:00",
            "2020-02-10",
            (1581292800000, 1581350400000),
            id="slashes, no padding; a bare end date includes the day",
        ),
        pytest.param(
            "2020-02-10T00:00:00+00:00",
            "2020-02-11T00:00:00+00:00",
            (1581292800000, 1581379200000),
            id="explicit offset wins",
        ),
    ],
)
def test_pass_times(valid_from: str, valid_until: str, expected: tuple[int, int]) -> None:
    result = load_text(
        "passes",
        "pass_no,community_id,host_id_number,valid_from,valid_until\n"
        f"P1,{COMMUNITY},{ID_A},{valid_from},{valid_until}\n",
    )
    assert result.errors == []
    record = result.records[0]
    assert (record["valid_from"], record["valid_until"]) == expected
    assert record["max_entries"] == 1


def test_pass_time_zone_is_the_communitys() -> None:
    text = (
        "pass_no,community_id,host_id_number,valid_from,valid_until\n"
        f"P1,{COMMUNITY},{ID_A},2020-02-10 08:00,2020-02-10 09:00\n"
    )
    urumqi = load_passes(io.StringIO(text), PSEUDONYMISER, timezone="Asia/Urumqi", updated_at_ms=0)
    shanghai = load_text("passes", text)
    assert urumqi.records[0]["valid_from"] - shanghai.records[0]["valid_from"] == 2 * 3_600_000


@pytest.mark.parametrize(
    ("plate", "ok"),
    [
        pytest.param("闽A 12345", True, id="blank inside is dropped"),
        pytest.param("闽AD12345", True, id="new energy"),
        pytest.param("闽A1234", False, id="too short"),
    ],
)
def test_vehicle_plates(plate: str, ok: bool) -> None:
    result = load_text("vehicles", f"plate,community_id\n{plate},{COMMUNITY}\n")
    assert len(result.records) == int(ok)
    assert plate not in repr(result)


@pytest.mark.parametrize(
    ("building", "expected"),
    [
        pytest.param("12", "12", id="the building column is kept"),
        pytest.param(" 3 ", "3", id="trimmed"),
        pytest.param("", None, id="blank: unknown (the household stands in for clusters)"),
    ],
)
def test_resident_building_column(building: str, expected: str | None) -> None:
    header = "身份证号,社区代码,户号,楼栋,状态\n"
    text = header + f"350102195803120120,{COMMUNITY},1-101,{building},正常\n"
    (record,) = load_residents(io.StringIO(text), PSEUDONYMISER, updated_at_ms=0).records
    assert record["building_id"] == expected
