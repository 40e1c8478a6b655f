"""Check digits, plates, phones (fangxian.core.codes); pseudonyms, masks (fangxian.core.privacy)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from fangxian.core.codes import (
    county_code,
    credit_code_check_char,
    credit_code_check_ok,
    credit_code_format_ok,
    normalise_id_number,
    normalise_phone,
    normalise_plate,
    organisation_code_check_char,
    plate_ok,
    resident_id_check_char,
    resident_id_check_ok,
)
from fangxian.core.privacy import (
    Pseudonymiser,
    mask_id_number,
    mask_name,
    mask_phone,
    mask_plate,
    mask_token,
)


@pytest.mark.parametrize(
    ("id18", "ok"),
    [
        pytest.param("11010519491231002X", True, id="the GB 11643 example, check char X"),
        pytest.param("320106199003071234", True, id="synthetic ID, check digit 4"),
        pytest.param("440304198512314565", True, id="synthetic ID, check digit 5"),
        pytest.param("110105200002290013", True, id="29 February of a leap year"),
        pytest.param("110105194912310021", False, id="wrong check digit"),
        pytest.param("11010519491231002x", False, id="lower-case x unless normalised"),
        pytest.param("110105194902300020", False, id="30 February with a right check digit"),
        pytest.param("110105190002290017", False, id="29 February 1900 is not a date"),
        pytest.param("110105491231002", False, id="old 15-digit ID is not 18 chars"),
        pytest.param("11010519491231002", False, id="17 characters"),
        pytest.param("11010519491231002X0", False, id="19 characters"),
        pytest.param("1101051949123100AX", False, id="letter among the first 17"),
        pytest.param("１１０１０５１９４９１２３１００２X", False, id="full-width digits"),
        pytest.param("", False, id="empty"),
    ],
)
def test_resident_id_check(id18: str, ok: bool) -> None:
    assert resident_id_check_ok(id18) is ok


def test_resident_id_check_char_of_the_standard_example() -> None:
    assert resident_id_check_char("11010519491231002") == "X"


def test_normalised_lower_case_x_passes() -> None:
    assert resident_id_check_ok(normalise_id_number(" 11010519491231002x "))


@pytest.mark.parametrize(
    ("code", "format_ok", "check_ok"),
    [
        pytest.param("91350100M000100Y43", True, True, id="the GB 32100 example"),
        pytest.param("55110105MA01N002XF", True, True, id="synthetic residents committee code"),
        pytest.param("91350100M000100Y44", True, False, id="wrong check character"),
        pytest.param("91350100M000100I43", False, False, id="I is not in the alphabet"),
        pytest.param("91350100M000100O43", False, False, id="O is not in the alphabet"),
        pytest.param("91350100m000100y43", False, False, id="lower case"),
        pytest.param("91350100M000100Y4", False, False, id="17 characters"),
        pytest.param("913501A0M000100Y43", False, False, id="county code not all digits"),
    ],
)
def test_credit_code(code: str, format_ok: bool, check_ok: bool) -> None:
    assert credit_code_format_ok(code) is format_ok
    assert credit_code_check_ok(code) is check_ok


def test_credit_code_check_char_and_county() -> None:
    assert credit_code_check_char("91350100M000100Y4") == "3"
    assert county_code("91350100M000100Y43") == "350100"
    with pytest.raises(ValueError):
        county_code("not-a-code")


def test_organisation_code_check_char_matches_the_example() -> None:
    # chars 9–17 of 91350100M000100Y43 are an organisation code M000100Y + check char 4
    assert organisation_code_check_char("M000100Y") == "4"


@pytest.mark.parametrize(
    ("plate", "ok"),
    [
        pytest.param("闽A12345", True, id="ordinary plate"),
        pytest.param("京N8E2A1", True, id="ordinary plate with letters in the serial"),
        pytest.param("粤B1234学", True, id="learner plate ends in 学"),
        pytest.param("京A1234挂", True, id="trailer plate ends in 挂"),
        pytest.param("粤Z1234港", True, id="Hong Kong cross-border plate ends in 港"),
        pytest.param("闽AD12345", True, id="new energy small car: D first"),
        pytest.param(
            "京AF1B345", False, id="new energy small car: only the 2nd serial char may be a letter"
        ),
        pytest.param("京AFB2345", True, id="new energy small car: letter in 2nd serial position"),
        pytest.param("粤B12345D", True, id="new energy large vehicle: D last"),
        pytest.param("粤B12345X", False, id="8 chars but not a new-energy plate"),
        pytest.param("京AI2345", False, id="no I in the serial"),
        pytest.param("京O12345", False, id="no O as the authority letter"),
        pytest.param("X A12345", False, id="not a province"),
        pytest.param("京A123", False, id="too short"),
        pytest.param("京A12345学", False, id="too long for a special plate"),
    ],
)
def test_plate_ok(plate: str, ok: bool) -> None:
    assert plate_ok(plate) is ok


def test_plate_letter_sets_are_configurable() -> None:
    assert not plate_ok("京A12345", letters="BCD")
    assert plate_ok("京A12345", provinces="京")
    assert not plate_ok("闽A12345", provinces="京")
    assert not plate_ok("闽AD12345", new_energy_letters="F")
    assert not plate_ok("粤B1234学", special_suffixes="挂")


def test_normalise_plate() -> None:
    assert normalise_plate(" 闽a·12345 ") == "闽A12345"


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        pytest.param("13812345678", "13812345678", id="plain mobile"),
        pytest.param("+86 138-1234-5678", "13812345678", id="country code and dashes"),
        pytest.param("008613812345678", "13812345678", id="0086 prefix"),
        pytest.param("010-12345678", "01012345678", id="Beijing landline"),
        pytest.param("0591 8765 4321", "059187654321", id="Fuzhou landline"),
    ],
)
def test_normalise_phone(raw: str, normalised: str) -> None:
    assert normalise_phone(raw) == normalised


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("12345", id="too short"),
        pytest.param("23812345678", id="mobile must start with 1[3-9]"),
        pytest.param("1381234567", id="10-digit mobile"),
        pytest.param("", id="empty"),
    ],
)
def test_normalise_phone_rejects(raw: str) -> None:
    with pytest.raises(ValueError) as err:
        normalise_phone(raw)
    assert raw == "" or raw not in str(err.value)


KEY = b"test-key-0123456789"


def test_pseudonymiser_refuses_an_empty_key() -> None:
    with pytest.raises(ValueError, match="FANGXIAN_PSEUDONYM_KEY"):
        Pseudonymiser(b"")


def test_token_is_deterministic_hex_of_32() -> None:
    first = Pseudonymiser(KEY).token("resident", "11010519491231002X")
    again = Pseudonymiser(KEY).token("resident", "11010519491231002X")
    assert first == again
    assert re.fullmatch(r"[0-9a-f]{32}", first)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param(
            ("resident", "11010519491231002X"),
            ("resident", "11010519491231002x"),
            True,
            id="ID check char case does not matter",
        ),
        pytest.param(
            ("phone", "+86 138 1234 5678"),
            ("phone", "13812345678"),
            True,
            id="phone formatting does not matter",
        ),
        pytest.param(
            ("plate", "闽A·12345"),
            ("plate", "闽a12345"),
            True,
            id="plate dot and case do not matter",
        ),
        pytest.param(
            ("phone", "13812345678"),
            ("resident", "13812345678"),
            False,
            id="same digits as phone and as ID give different tokens",
        ),
        pytest.param(
            ("resident", "11010519491231002X"),
            ("resident", "320106199003071234"),
            False,
            id="different people",
        ),
    ],
)
def test_token_equivalence(a: tuple[str, str], b: tuple[str, str], same: bool) -> None:
    p = Pseudonymiser(KEY)
    assert (p.token(*a) == p.token(*b)) is same


def test_token_depends_on_the_key() -> None:
    raw = "11010519491231002X"
    assert Pseudonymiser(b"k1").token("resident", raw) != Pseudonymiser(b"k2").token(
        "resident", raw
    )


def test_pseudonymiser_repr_hides_the_key() -> None:
    assert "test-key" not in repr(Pseudonymiser(KEY))


@pytest.mark.parametrize(
    ("mask", "raw", "masked"),
    [
        pytest.param(
            mask_id_number, "11010519491231002X", "110105********002X", id="ID: 6, 8 stars, 4"
        ),
        pytest.param(mask_id_number, "110105491231002", "110105********1002", id="15-digit ID"),
        pytest.param(mask_id_number, "12345", "*****", id="short ID fully hidden"),
        pytest.param(mask_phone, "13812345678", "138****5678", id="mobile: 3 + **** + 4"),
        pytest.param(mask_phone, "+86 138-1234-5678", "138****5678", id="country code dropped"),
        pytest.param(
            mask_token, "a1b2c3d4e5f6a7b8c9d0e1f2a3b4e5f6", "a1b2****e5f6", id="token 4+4"
        ),
        pytest.param(mask_name, "张三丰", "张*丰", id="three-char name"),
        pytest.param(mask_name, "张三", "张*", id="two-char name"),
        pytest.param(mask_name, "欧阳娜娜", "欧**娜", id="four-char name"),
        pytest.param(mask_plate, "闽A·12345", "闽A***45", id="plate"),
    ],
)
def test_masks(mask: Callable[[str], str], raw: str, masked: str) -> None:
    assert mask(raw) == masked
