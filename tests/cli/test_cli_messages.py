"""Every error the CLI reports names its flags once, spelled as flags: one formatter for all messages.

The table below triggers each error path of export/inspect/check/validate/card/catalog/search/publish/get that can
be reached offline, and checks what the user reads: no flag said twice in a row, no flag glued to its value, no
Python spelling (``tasks=``, ``trust_pickle=True``) of an argument the command line sets with a flag.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch_models as tm
from safetensors.torch import save_file

import mlm_export
from mlm_export import export_item, save_item
from mlm_export.cli import main
from mlm_export.cli.messages import GLUED, cli_text, python_spellings, repeated_flags

PACKAGE_ROOT = Path(mlm_export.__file__).resolve().parents[1]  # the code under test, wherever it is
TESTS = Path(__file__).resolve().parents[1]
CLASS = ["--model-class", "torch_models:TinyConvNet"]
EXTENT = ["--bbox", "0", "0", "1", "1", "--datetime", "2024-01-01T00:00:00Z"]
pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])  # refused connections to a closed loopback port
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("messages")
    torch.manual_seed(0)
    weights = directory / "weights.safetensors"
    save_file(tm.TinyConvNet().state_dict(), str(weights))
    pickled = directory / "module.pt"
    torch.save(tm.TinyMLP(), pickled)
    item = export_item(weights, model_class="torch_models:TinyConvNet", bbox=[0, 0, 1, 1], datetime="2024-01-01")
    item_path = save_item(item, directory / "item.json")
    unverified = json.loads(item_path.read_text())
    for asset in unverified["assets"].values():
        asset.pop("file:checksum", None)
    (directory / "unverified.json").write_text(json.dumps(unverified))
    (directory / "taken.json").write_text("[1]")
    (directory / "a-file").write_text("x")
    (directory / "catalog").mkdir()
    assert main(["catalog", str(item_path), "-o", str(directory / "catalog")]) == 0
    return {"dir": directory, "weights": weights, "pickled": pickled, "item": item_path}


def _cases(f: dict[str, Path]) -> dict[str, tuple[list[str], str]]:
    """name -> (argv, a text the message must hold: the flag it names, or the fact it reports)."""
    w, d, item = str(f["weights"]), f["dir"], str(f["item"])
    out = ["-o", "$OUT"]
    cases = {
        "export: no --model-class": (["export", w, *EXTENT, *out], "--model-class"),
        "export: --model-class not importable": (["export", w, "--model-class", "mymodels:Nope", *out],
                                                 "--model-class 'mymodels:Nope'"),
        "export: --model-kwargs refused": (["export", w, *CLASS, "--model-kwargs", '{"nope": 1}', *out],
                                           "--model-kwargs"),
        "export: --input-shape refused": (["export", w, *CLASS, "--input-shape=-1,3,64,64", *out], "--input-shape"),
        "export: --datetime not ISO": (["export", w, *CLASS, "--bbox", "0", "0", "1", "1", "--datetime", "yesterday",
                                        *out], "--datetime 'yesterday'"),
        "export: --bbox west of east": (["export", w, *CLASS, "--bbox", "10", "0", "5", "1", *out], "--bbox [10.0"),
        "export: --start without --end": (["export", w, *CLASS, "--start", "2024-01-01", *out], "error:"),
        "export: --tasks unknown": (["export", w, *CLASS, *EXTENT, "--tasks", "nope-task", *out], "nope-task"),
        "export: --bands count": (["export", w, *CLASS, *EXTENT, "--bands", "a", "b", *out], "--bands"),
        "export: --classes count": (["export", w, *CLASS, *EXTENT, "--classes", "a", "b", *out], "error:"),
        "export: --value-scaling type": (["export", w, *CLASS, *EXTENT, "--value-scaling", '[{"type": "nope"}]',
                                          *out], "error:"),
        "export: --previous missing": (["export", w, *CLASS, *EXTENT, "--previous", str(d / "none.json"), *out],
                                       "none.json"),
        "export: --container": (["export", w, *CLASS, *EXTENT, "--container", "Bad Image!", *out], "error:"),
        "export: --doi": (["export", w, *CLASS, *EXTENT, "--doi", "not-a-doi", *out], "error:"),
        "export: --max-dry-run-memory tiny": (["export", w, *CLASS, *EXTENT, "--max-dry-run-memory", "1KB", *out],
                                              "--max-dry-run-memory"),
        "export: --max-dry-run-memory unit": (["export", w, *CLASS, "--max-dry-run-memory", "8XB", *out], "error"),
        "export: --device": (["export", w, *CLASS, *EXTENT, "--device", "tpu9", *out], "tpu9"),
        "export: --memory-budget tiny": (["export", w, *CLASS, *EXTENT, "--suggest-batch-size", "--memory-budget",
                                          "1", *out], "--memory-budget"),
        "export: -o exists": (["export", w, *CLASS, "-o", str(d / "taken.json")], "--overwrite"),
        "export: -o under a file": (["export", w, *CLASS, "--allow-outside", str(d), "-o",
                                     str(d / "a-file" / "x.json")], "a parent is a file"),
        "inspect: pickled module": (["inspect", str(f["pickled"])], "--trust-pickle"),
        "inspect: missing file": (["inspect", str(d / "none.pt")], "none.pt"),
        "inspect: bad --input-shape": (["inspect", w, *CLASS, "--input-shape=-1,a"], "--input-shape"),
        "inspect: --model-kwargs not JSON": (["inspect", w, "--model-kwargs", "{bad"], "--model-kwargs"),
        "inspect: --input-dtype": (["inspect", w, "--input-dtype", "floaty"], "--input-dtype"),
        "check: recorded class untrusted": (["check", item], "--trust-code"),
        "check: no checksum": (["check", str(d / "unverified.json"), "--trust-code"], "--no-verify"),
        "check: --asset": (["check", item, "--asset", "nope", "--trust-code"], "nope"),
        "check: missing item": (["check", str(d / "none.json")], "none.json"),
        "check: --max-download-size": (["check", item, "--trust-code", "--max-download-size", "8XB"], "8XB"),
        "validate: --schema-dir empty": (["validate", item, "--schema-dir", str(d / "catalog")], "error:"),
        "validate: not an Item": (["validate", str(d / "taken.json")], "taken.json"),
        "card: missing item": (["card", str(d / "none.json"), "-o", str(d / "c.html")], "none.json"),
        "card: -o exists": (["card", item, "-o", str(d / "taken.json")], "error:"),
        "catalog: exists": (["catalog", item, "-o", str(d / "catalog")], "--overwrite"),
        "catalog: missing item": (["catalog", str(d / "none.json"), "-o", str(d / "c2")], "none.json"),
        "search: --datetime": ([ "search", str(d / "catalog"), "--datetime", "yesterday"], "yesterday"),
        "search: --filter": (["search", item, "--filter", '"a" === 1'], "error:"),
        "search: --bbox": (["search", str(d / "catalog"), "--bbox", "10", "0", "5", "1"], "--bbox"),
        "search: --header": (["search", CLOSED, "--header", "no colon"], "--header"),
        "search: unreachable": (["search", CLOSED, "--max-time", "5"], "127.0.0.1:9"),
        "publish: local hrefs": (["publish", item, "--to", CLOSED, "--collection", "c"], "--href-base"),
        "publish: --header": (["publish", item, "--to", CLOSED, "--collection", "c", "--header", "x"], "--header"),
        "publish: --upload-to": (["publish", item, "--to", CLOSED, "--collection", "c", "--upload-to", "ftp://x"],
                                 "ftp://x"),
        "get: scheme": (["get", "ftp://x/item.json", "-o", str(d / "got")], "ftp://x"),
        "get: unreachable": (["get", f"{CLOSED}/item.json", "-o", str(d / "got"), "--download-timeout", "5"],
                             "127.0.0.1:9"),
        "get: --max-download-size": (["get", f"{CLOSED}/i.json", "-o", str(d / "got"), "--max-download-size", "x"],
                                     "error"),
    }  # fmt: skip
    for number, (argv, _) in enumerate(cases.values()):  # each export its own Item beside the weights (none written)
        argv[:] = [str(d / f"out-{number}.json") if arg == "$OUT" else arg for arg in argv]
    return cases


CASES = list(_cases({"dir": Path("."), "weights": Path("."), "pickled": Path("."), "item": Path(".")}))


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str | None, str]:
    try:
        code: int | str | None = main(argv)
    except SystemExit as exit_:  # usage errors: argparse's own message
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES)
def test_every_cli_error_names_its_flags_once(
    case: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv, expected = _cases(files)[case]
    code, err = _run(argv, capsys)
    assert code in (1, 2), err
    assert "error" in err and expected in err, err
    assert not repeated_flags(err), err
    assert not GLUED.findall(err), err
    assert not python_spellings(err), err
    assert "Traceback" not in err and "Warning:" not in err, err


@pytest.mark.parametrize(
    ("library", "cli"),
    [
        ("Pass input_shape= or example_input= with shapes the model accepts.",
         "Pass --input-shape with shapes the model accepts."),
        ("Fix the model's constructor arguments (model_kwargs= / --model-kwargs).",
         "Fix the model's constructor arguments (--model-kwargs)."),
        ("Pass href_base= (--href-base) with the public URL, or upload_to= (--upload-to) to copy them.",
         "Pass --href-base with the public URL, or --upload-to to copy them."),
        ("model_class='mymodels:Nope': cannot import", "--model-class 'mymodels:Nope': cannot import"),
        ("datetime='yesterday' is not", "--datetime 'yesterday' is not"),
        ("bbox=[10.0, 0.0, 5.0, 1.0]: west", "--bbox [10.0, 0.0, 5.0, 1.0]: west"),
        ("Give smaller input sizes (input_shape=/example_input=, --input-shape), raise the cap with "
         "max_dry_run_memory= (--max-dry-run-memory), or pass 0.",
         "Give smaller input sizes (--input-shape), raise the cap with --max-dry-run-memory, or pass 0."),
        ("Pass trust_pickle=True (--trust-pickle) only", "Pass --trust-pickle only"),
        ("Pass verify=False (--no-verify) only", "Pass --no-verify only"),
        ("Pass if_exists='skip' (--if-exists skip) to keep them", "Pass --if-exists skip to keep them"),
        ("raise the cap: max_download_size= (--max-download-size, $MLM_EXPORT_MAX_DOWNLOAD_SIZE), e.g. '64GiB'",
         "raise the cap: --max-download-size ($MLM_EXPORT_MAX_DOWNLOAD_SIZE), e.g. '64GiB'"),
        ("ran longer than dry_run_timeout=30 s", "ran longer than --dry-run-timeout 30 s"),
        ("Tasks were inferred; pass tasks= to set them.", "Tasks were inferred; pass --tasks to set them."),
        ("Pass overwrite=True to replace it", "Pass --overwrite to replace it"),
        ("stopped: it has more than max_pages=2 pages of hits. Raise max_pages= (CLI: --max-pages).",
         "stopped: it has more than --max-pages 2 pages of hits. Raise --max-pages."),
        ("Pass headers={'Authorization': 'Bearer ...'} (CLI: --header), or set $MLM_EXPORT_STAC_TOKEN.",
         "Pass --header, or set $MLM_EXPORT_STAC_TOKEN."),
        ("keep --input-shape=-1,13,64,64 and weights=None as they are",
         "keep --input-shape=-1,13,64,64 and weights=None as they are"),
    ],
)  # fmt: skip
def test_one_formatter_writes_python_arguments_as_flags(library: str, cli: str) -> None:
    assert cli_text(library) == cli
    assert not repeated_flags(cli) and not GLUED.findall(cli) and not python_spellings(cli)


def test_the_checks_catch_what_the_old_messages_said() -> None:
    said = ["Pass --input-shape or --input-shape", "(--model-kwargs / --model-kwargs)",
            "Pass --href-base (--href-base)", "(--input-shape/--input-shape, --input-shape)"]  # fmt: skip
    assert all(repeated_flags(text) for text in said)
    assert all(GLUED.search(t) for t in ["--model-class'mymodels:Nope'", "--datetime'yesterday'", "--bbox[10.0, 0"])
    assert python_spellings("note: pass tasks= to set them") == ["tasks="]


def test_input_shape_value_may_start_with_a_dash(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["inspect", str(files["weights"]), *CLASS, "--input-shape", "-1,4,32,32", "--no-probe", "--json"]
    code, err = _run(argv, capsys)  # argparse alone: "expected at least one argument"
    assert code == 0, err
    argv[argv.index("-1,4,32,32")] = "-1x4x32x32"
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["inputs"][0]["shape"] == [-1, 4, 32, 32]


def test_flags_of_the_formatter_are_real_flags() -> None:
    from mlm_export.cli import build_parser
    from mlm_export.cli.messages import _actions, python_arguments

    flags = {option for action in _actions(build_parser()) for option in action.option_strings}
    assert set(python_arguments().values()) <= flags
    assert python_arguments()[("trust_pickle", "True")] == "--trust-pickle"
    assert python_arguments()[("start_datetime", None)] == "--start"


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m mlm_export ARGS`` in a child process, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), str(TESTS)]), "PYTHONWARNINGS": "default"}
    return subprocess.run(
        [sys.executable, "-m", "mlm_export", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=240
    )


def test_warnings_and_notes_read_the_same_in_every_command(files: dict[str, Path]) -> None:
    """No ``file.py:228: UserWarning:`` line; a model's notes are ``note:`` lines in export and inspect alike."""
    weights, directory = files["weights"], files["dir"]
    raw = re.compile(r"\w+Warning: |\.py:\d+: ")
    inspected = _cli(["inspect", str(weights), *CLASS], directory)
    assert inspected.returncode == 0, inspected.stderr
    item = directory / "warned" / "item.json"
    exported = _cli(
        ["export", str(weights), *CLASS, *EXTENT, "--value-scaling", "none", "--resize-type", "none",
         "--allow-outside", str(directory), "-o", str(item)],
        directory,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    checked = _cli(["check", str(item), "--trust-code", "--allow-outside", str(directory)], directory)
    assert checked.returncode == 0, checked.stderr
    for run in (inspected, exported, checked):
        assert not raw.search(run.stderr), run.stderr
        assert all(line.startswith(("warning: ", "note: ")) for line in run.stderr.splitlines()), run.stderr
    # the tests' folder is a git repository without a public remote: export warns about it, once, as a line
    assert "warning: The git repository" in exported.stderr
    held = "note: 'weights.safetensors' holds 9 tensors"
    assert held in inspected.stdout and held in exported.stderr
    assert "warning: 'weights.safetensors'" not in exported.stderr
    assert "pass --tasks to set them" in inspected.stdout and "tasks=" not in inspected.stdout
    unknown = next(line for line in exported.stderr.splitlines() if "unknown and left out" in line)
    assert "pre_processing_function" in unknown and "--none-applies" in unknown  # what is still missing...
    assert "--value-scaling" not in unknown and "--resize-type" not in unknown  # ...and not what was passed
