"""``mlm-export card`` and ``mlm-export catalog --cards``: files written, exit codes, and a light import."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES_DIR
from factories import item_dict

from mlm_export.cli import main


def test_card_html_and_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    item = EXAMPLES_DIR / "item_multi_io.json"
    assert main(["card", str(item), "-o", str(tmp_path / "card.html")]) == 0
    assert main(["card", str(item), "-o", str(tmp_path / "card.md")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'card.html'} (valid)" in out
    assert f"wrote {tmp_path / 'card.md'} and {tmp_path / 'card-map.svg'} (valid)" in out
    assert (tmp_path / "card.html").read_text().startswith("<!DOCTYPE html>")
    assert (tmp_path / "card-map.svg").read_text().startswith("<?xml")


def test_invalid_item_exits_one_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = item_dict(tmp_path)
    document["properties"]["mlm:accelerator"] = "cpu"  # not an MLM accelerator name
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    assert main(["card", str(path), "-o", str(tmp_path / "bad.html")]) == 1
    captured = capsys.readouterr()
    assert "/properties/mlm:accelerator" in captured.out
    assert captured.err.startswith("error: ") and "hint: " in captured.err and "--allow-invalid" in captured.err
    page = (tmp_path / "bad.html").read_text()  # the card is written all the same, with its problems
    assert "/properties/mlm:accelerator" in page.split('id="problems"', 1)[1]
    assert main(["card", str(path), "-o", str(tmp_path / "bad.html"), "--allow-invalid"]) == 1  # exists
    assert main(["card", str(path), "-o", str(tmp_path / "bad.html"), "--allow-invalid", "--overwrite"]) == 0
    assert main(["card", str(path), "-o", str(tmp_path / "unchecked.html"), "--no-validate"]) == 0
    assert 'id="validation">not checked<' in (tmp_path / "unchecked.html").read_text()


def test_unreachable_schemas_are_not_checked_not_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No schema reachable (an empty schema directory, sockets off): the card is written 'not checked', exit 0 with
    a warning saying why; "could not check" is not "invalid"."""
    empty = tmp_path / "no-schemas"
    empty.mkdir()
    monkeypatch.setenv("MLM_EXPORT_SCHEMA_DIR", str(empty))
    item = tmp_path / "item.json"
    item.write_text((EXAMPLES_DIR / "item_basic.json").read_text())
    assert main(["card", str(item), "-o", str(tmp_path / "card.html"), "--schema-dir", str(empty)]) == 0
    captured = capsys.readouterr()
    assert f"wrote {tmp_path / 'card.html'} (not checked)" in captured.out
    assert "error:" not in captured.err and "is not valid" not in captured.err
    assert "warning: Validation could not run: Schema https://schemas.stacspec.org/" in captured.err
    assert str(empty) in captured.err and "warning: the Item was not validated" in captured.err
    assert 'id="validation">not checked<' in (tmp_path / "card.html").read_text()


def test_an_unreadable_extension_schema_is_not_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An extension schema that cannot be read (not in the schema directory, no network) leaves the Item 'not
    checked', whatever schemas a directory or the package holds; a real problem beside it still makes it invalid."""
    document = json.loads((EXAMPLES_DIR / "item_basic.json").read_text())
    unknown = "https://example.com/unknown-extension/v9.9.9/schema.json"
    document["stac_extensions"].append(unknown)
    (tmp_path / "item.json").write_text(json.dumps(document))
    shutil.copy(EXAMPLES_DIR / "collection.json", tmp_path)  # the example's ./collection.json link resolves
    assert main(["card", str(tmp_path / "item.json"), "-o", str(tmp_path / "card.html")]) == 0
    captured = capsys.readouterr()
    assert "(not checked)" in captured.out and f"warning: Not checked against {unknown}" in captured.err
    document["properties"]["mlm:accelerator"] = "cpu"  # not an MLM accelerator name
    (tmp_path / "bad.json").write_text(json.dumps(document))
    assert main(["card", str(tmp_path / "bad.json"), "-o", str(tmp_path / "bad.html")]) == 1
    assert "(invalid)" in capsys.readouterr().out


def test_card_errors_are_one_line_with_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["card", str(tmp_path / "missing.json"), "-o", str(tmp_path / "c.html")]) == 1
    assert main(["card", str(EXAMPLES_DIR / "item_basic.json"), "-o", str(tmp_path / "c.pdf")]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert "missing.json" in errors[0] and "c.pdf" in errors[1]
    assert not (tmp_path / "c.html").exists() and not (tmp_path / "c.pdf").exists()
    with pytest.raises(SystemExit) as info:
        main(["card", str(EXAMPLES_DIR / "item_basic.json")])  # -o missing
    assert info.value.code == 2


def test_catalog_cards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = [str(EXAMPLES_DIR / n) for n in ("item_basic.json", "item_multi_io.json")]
    assert main(["catalog", *items, "-o", str(tmp_path / "cat"), "--cards"]) == 0
    index = (tmp_path / "cat" / "index.html").read_text()
    for item_id in ("example-model", "model-multi-input"):
        card = tmp_path / "cat" / item_id / f"{item_id}.html"
        assert f'href="{item_id}/{item_id}.html"' in index
        assert 'validation: <span class="status valid"' in card.read_text()


def test_parser_and_import_stay_light() -> None:
    code = (
        "import sys, mlm_export\nfrom mlm_export.cli import build_parser\nbuild_parser()\n"
        "print(sorted(m for m in ('jinja2', 'torch', 'onnx', 'mlm_export.card') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_readme_card_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Model cards", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "item.json").write_text((EXAMPLES_DIR / "item_basic.json").read_text())
    shutil.copy(EXAMPLES_DIR / "collection.json", tmp_path)  # the example's ./collection.json link resolves
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    assert (tmp_path / "card.md").is_file() and (tmp_path / "card-map.svg").is_file()
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "item.json").write_text((EXAMPLES_DIR / "item_basic.json").read_text())
    shutil.copy(EXAMPLES_DIR / "collection.json", tmp_path / "cli")
    monkeypatch.chdir(tmp_path / "cli")
    for line in section.split("```bash\n", 1)[1].split("```", 1)[0].splitlines():
        argv = line.split("#", 1)[0].split()[1:]
        if argv[0] == "catalog":
            argv = ["catalog", "item.json", "-o", "catalog/", "--cards"]
        assert main(argv) == 0, line
    assert (tmp_path / "cli" / "catalog" / "index.html").is_file()
