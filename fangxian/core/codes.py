"""Code checks, one meaning each: resident IDs (GB 11643), unified social credit codes
(GB 32100, with the GB 11714 organisation code inside), plates (GA 36), mainland phones.

Pure (no I/O, no clock). ``schemas/validate.py`` (the codec's value checks), the CSV loaders and
the simulator all use these; masking and pseudonyms are in ``fangxian/core/privacy.py``.

Standards:
- Resident ID (GB 11643): 6-digit area code, 8-digit birth date, 3-digit sequence, check char.
- Unified Social Credit Code (GB 32100): registration authority, category, 6-digit county code
  (GB/T 2260), 9-char organisation code (GB 11714), check char (ISO 7064 mod 31).
- Motor vehicle plates (GA 36): province char, issuing-authority letter, 5 serial chars; new-energy
  plates have 6 serial chars with D/F (electric / hybrid) first (small) or last (large).
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = [
    "CREDIT_CODE_ALPHABET",
    "NEW_ENERGY_LETTERS",
    "PLATE_LETTERS",
    "PLATE_PROVINCES",
    "PLATE_SPECIAL_SUFFIXES",
    "county_code",
    "credit_code_check_char",
    "credit_code_check_ok",
    "credit_code_format_ok",
    "normalise_id_number",
    "normalise_phone",
    "normalise_plate",
    "organisation_code_check_char",
    "plate_ok",
    "resident_id_check_char",
    "resident_id_check_ok",
]

# --- GB 11643 resident ID -------------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"  # index: weighted sum mod 11


def normalise_id_number(raw: str) -> str:
    """Strip blanks and upper-case the check char (``x`` is a common way to type ``X``)."""
    return "".join(raw.split()).upper()


def resident_id_check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    if len(first17) != 17 or not first17.isdigit() or not first17.isascii():
        raise ValueError("need exactly 17 digits / 需要 17 位数字")
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK_CHARS[total % 11]


def _birth_date_ok(yyyymmdd: str) -> bool:
    try:
        born = dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return born.year >= 1880


def resident_id_check_ok(id18: str) -> bool:
    """True for an 18-char resident ID with a real birth date and a correct check char.

    Input is taken as given (call ``normalise_id_number`` first to accept a lower-case ``x``).
    """
    if len(id18) != 18 or not id18.isascii():
        return False
    first17, check = id18[:17], id18[17]
    if not first17.isdigit() or not _birth_date_ok(first17[6:14]):
        return False
    return resident_id_check_char(first17) == check


# --- GB 32100 unified social credit code -----------------------------------------------------

CREDIT_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, S, V, Z
_CREDIT_VALUES = {c: i for i, c in enumerate(CREDIT_CODE_ALPHABET)}
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def credit_code_format_ok(code: str) -> bool:
    """18 characters from the GB 32100 alphabet, the county part (chars 3–8) all digits."""
    return len(code) == 18 and all(c in _CREDIT_VALUES for c in code) and code[2:8].isdigit()


def credit_code_check_char(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters."""
    if len(first17) != 17 or any(c not in _CREDIT_VALUES for c in first17):
        raise ValueError("need 17 characters of the GB 32100 alphabet / 需要 17 位代码字符")
    total = sum(_CREDIT_VALUES[c] * w for c, w in zip(first17, _CREDIT_WEIGHTS, strict=True))
    return CREDIT_CODE_ALPHABET[(31 - total % 31) % 31]


def credit_code_check_ok(code: str) -> bool:
    """True when ``code`` is well-formed and its check character is right.

    Some codes issued in practice fail the check: callers flag those, they do not drop them.
    """
    return credit_code_format_ok(code) and credit_code_check_char(code[:17]) == code[17]


def county_code(credit_code: str) -> str:
    """The county's administrative area code (GB/T 2260): characters 3–8 of the credit code."""
    if not credit_code_format_ok(credit_code):
        raise ValueError("not a unified social credit code / 不是统一社会信用代码")
    return credit_code[2:8]


_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def organisation_code_check_char(first8: str) -> str:
    """The GB 11714 check character of an organisation code (chars 9–17 of a credit code)."""
    if len(first8) != 8 or not first8.isascii() or not first8.isalnum():
        raise ValueError("need 8 alphanumeric characters / 需要 8 位字母或数字")
    total = sum(int(c, 36) * w for c, w in zip(first8.upper(), _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return "0" if check == 11 else "X" if check == 10 else str(check)


# --- plates ----------------------------------------------------------------------------------

PLATE_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # issuing authority; no I, O
NEW_ENERGY_LETTERS = "DF"
PLATE_SPECIAL_SUFFIXES = "挂学警港澳"
_SERIAL_CHARS = frozenset("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")


def normalise_plate(raw: str) -> str:
    """Upper-case and drop blanks and the middle dots people write (``闽A·12345``)."""
    return "".join(c for c in raw.upper() if not c.isspace() and c not in "·•.-")


def plate_ok(
    plate: str,
    *,
    provinces: str = PLATE_PROVINCES,
    letters: str = PLATE_LETTERS,
    new_energy_letters: str = NEW_ENERGY_LETTERS,
    special_suffixes: str = PLATE_SPECIAL_SUFFIXES,
) -> bool:
    """True for an ordinary (7-char) or new-energy (8-char) plate. Pass a normalised plate.

    Ordinary: province, letter, 5 serial chars (no I/O); the last may be one of 挂学警港澳.
    New energy, small car: province, letter, D/F, one serial char, 4 digits.
    New energy, large vehicle: province, letter, 5 digits, D/F.
    """
    if len(plate) not in (7, 8) or plate[0] not in provinces or plate[1] not in letters:
        return False
    serial = plate[2:]
    if len(plate) == 7:
        head, last = serial[:4], serial[4]
        return all(c in _SERIAL_CHARS for c in head) and (
            last in _SERIAL_CHARS or last in special_suffixes
        )
    if serial[0] in new_energy_letters:
        return serial[1] in _SERIAL_CHARS and all(c in _DIGITS for c in serial[2:])
    return serial[5] in new_energy_letters and all(c in _DIGITS for c in serial[:5])


# --- phones ----------------------------------------------------------------------------------

_MOBILE = re.compile(r"1[3-9]\d{9}")
_LANDLINE = re.compile(r"0\d{9,11}")


def normalise_phone(raw: str) -> str:
    """Digits only, without the +86 / 0086 country prefix; a mainland mobile or landline.

    Raises ``ValueError`` (message without the number) when it is neither.
    """
    digits = "".join(c for c in raw if c.isdigit())
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) in (11, 12):
            digits = digits[len(prefix) :]
            break
    if _MOBILE.fullmatch(digits) or _LANDLINE.fullmatch(digits):
        return digits
    raise ValueError("not a mainland phone number / 不是有效的电话号码")
