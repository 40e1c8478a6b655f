"""Files the loaders cannot use at all raise one LoadError with a message in both languages,
never a raw decoding or parsing exception (the first two cases were found by fuzzing,
tests/fuzz/fuzz_loaders.py). A usable file of the same kind is the control."""

from __future__ import annotations

from pathlib import Path

import pytest

from fangxian.cli import main
from fangxian.core.settings import Settings
from fangxian.ingest.loading import LoadError, read_kind

SETTINGS = Settings(pseudonym_key="test-key")
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.mark.parametrize(
    ("kind", "content", "message"),
    [
        pytest.param(
            "rules", b'{"community_id": "\xe7("}', "UTF-8", id="rules JSON that is not UTF-8"
        ),
        pytest.param(
            "residents",
            "身份证号,社区代码,户号\n".encode() + b"\xff\xff\n",
            "GB18030",
            id="CSV that is neither UTF-8 nor GB18030",
        ),
        pytest.param("rules", b"{not json", "JSON", id="rules that are not JSON"),
        pytest.param("rules", b"[1, 2]", "object", id="rules that are not objects"),
        pytest.param("rules", b"[" * 100_000, "JSON", id="rules nested beyond recursion"),
        pytest.param(
            "passes",
            b'pass_no,community_id,host_id_number,valid_from,valid_until\n"'
            + b"x" * 200_000
            + b'"\n',
            "CSV",
            id="a CSV field over the csv module's limit",
        ),
    ],
)
def test_unusable_file_is_one_load_error(
    tmp_path: Path, kind: str, content: bytes, message: str
) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    with pytest.raises(LoadError, match=message) as raised:
        read_kind(kind, path, SETTINGS)
    assert raised.value.message_zh and raised.value.message_en


@pytest.mark.parametrize(
    "kind", [pytest.param(k, id=k) for k in ("residents", "passes", "vehicles")]
)
def test_control_the_example_files_load(kind: str) -> None:
    result = read_kind(kind, EXAMPLES / f"{kind}-example.csv", SETTINGS)
    assert result.records


def test_cli_reports_a_load_error_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules.json"
    path.write_bytes(b"\xff\xfe")
    assert main(["load", "rules", str(path), "--dry-run"]) == 2
    out = capsys.readouterr().out
    assert "cannot load" in out and "UTF-8" in out
