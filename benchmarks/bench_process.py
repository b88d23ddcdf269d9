"""Export as a process, with the model class where users keep it, against the overlapped floor of the same run.

An MLP of ``layers`` square ``Linear`` layers (4096 wide: 64 MiB each; 16 by default, 1 GiB) is saved as a
``torch.save`` state_dict (``.pt``) and as ``.safetensors``. Its class ``mlmbench_nets.nets:Wide`` lives in

* ``installed``: a tiny package really installed (``pip install --no-deps --target DIR``);
* ``editable``: the same package installed editable (``pip install -e --prefix DIR``; its site dir is added as
  the interpreter adds one at start-up, which runs setuptools' ``.pth`` and imports its finder);
* ``git-remote``: a git repository with a public remote (``https://github.com/example/x.git``; nothing is fetched);
* ``git-no-remote``: a git repository without a remote;
* ``plain``: a plain folder on ``PYTHONPATH``;

each exported by the CLI (``mlm-export export FILE --model-class ...``); plus ``safetensors`` (the CLI, class in a
plain folder), ``notebook`` (a script whose class is defined in ``__main__``, ``export_item(path, model_class=Wide)``
and ``save_item``) and ``in-memory`` (a script that loads the module, then ``export_item(model)``: the weights are
written as safetensors and hashed).

The floor of each file format, each its own process: max(A, B), A = ``sha256`` of the file, B = ``import torch`` +
load (``torch.load(mmap=True)`` / safetensors ``load_file``) into the class built on the meta device + one forward.
That is the floor of the CLI cases: their process starts hashing the file before it imports torch.

A script runs its own code first, so no hash can start before the line that calls ``export_item``: ``notebook``
calls it after ``import torch`` (and its class), ``in-memory`` after loading the weights too (and only then do the
bytes to hash exist: the module becomes a safetensors file, written while it is hashed, ``os.write`` on one core and
sha256 on the other). Each script case's floor is measured too, as a process that does only what no export can
skip: the script's own lines before the call, then ``hashlib.file_digest`` of the 1 GiB file, then its exit (torch's
teardown: ~0.45 s after a bare ``import torch``) (:data:`SCRIPT_FLOORS`); a script case's floor is max(B, that
process) (:func:`case_floor`; for the CLI cases it is max(A, B)). It counts no time to run the model or write the
file, so it is a lower bound. The table also gives every case's ratio to max(A, B), which no script that imports
torch before calling ``export_item`` can approach: import torch, hash and exit in turn already take ~1.3 x max(A, B)
here.

Target: every case <= 1.15 x its floor (medians, interleaved rounds), peak RSS <= 1.2 x floor B's. The worst case is
the figure. ``--before DIR`` also times the CLI of another checkout (plain folder, ``.pt``) in the same run.

Each process runs once untimed first, with ``PYTHONDONTWRITEBYTECODE`` cleared for the children: it writes its
modules' bytecode, as ``pip install`` does for an installed package and did for torch's. Before every process
(untimed), the script cases' output folders are emptied and ``sync`` runs (:func:`_settle`): each export writes a new
file on a machine that is not still writing back the previous one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED_SCHEMAS = HERE.parents[1] / "shared" / "schemas"
if SHARED_SCHEMAS.is_dir():
    os.environ.setdefault("MLM_EXPORT_SCHEMA_DIR", str(SHARED_SCHEMAS))
LAYERS = 16
WIDTH = 4096
PACKAGE = "mlmbench_nets"
ENTRYPOINT = f"{PACKAGE}.nets:Wide"
#: Runs a module or code and reports the process's own peak RSS (VmHWM: ru_maxrss is inherited across exec).
#: ``BENCH_SITE_DIR`` is added as a site dir first (the editable install's .pth runs, as at start-up).
WRAP = """
import atexit, os, runpy, sys, time
START = time.perf_counter()
def mark(name):
    sys.stderr.write("MARK %s %.6f\\n" % (name, time.perf_counter() - START))
if os.environ.get("BENCH_SITE_DIR"):
    import site
    site.addsitedir(os.environ["BENCH_SITE_DIR"])
def report():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("VMHWM %s\\n" % line.split()[1])
atexit.register(report)
kind, target = sys.argv[1], sys.argv[2]
sys.argv = [target, *sys.argv[3:]]
if kind == "module":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    exec(compile(target, "<bench>", "exec"), {"__name__": "__main__", "mark": mark})
"""
MODEL = '''import torch


class Wide(torch.nn.Module):
    """Square Linear layers and a 10-class head."""

    def __init__(self, layers: int, width: int = 4096) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])
        self.head = torch.nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
'''
PYPROJECT = f"""[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"
[project]
name = "mlmbench-nets"
version = "1.0.0"
[project.urls]
Repository = "https://github.com/example/mlmbench-nets"
[tool.setuptools]
packages = ["{PACKAGE}"]
"""
HASH = """import hashlib, sys, time
start = time.perf_counter()
with open(sys.argv[1], 'rb') as f: hashlib.file_digest(f, 'sha256')
sys.stderr.write("MARK hash %.6f\\n" % (time.perf_counter() - start))
"""
LOADS = {
    "pt": "torch.load(sys.argv[1], weights_only=True, mmap=True)",
    "safetensors": "__import__('safetensors.torch').torch.load_file(sys.argv[1])",
}
FORWARD = """
import sys, torch
from {package}.nets import Wide
mark("imported")
with torch.device("meta"):
    model = Wide({layers}, {width})
model.load_state_dict({load}, assign=True)
mark("loaded")
with torch.inference_mode():
    model.eval()(torch.randn(1, {width}))
mark("forwarded")
"""
EXPORT_ARGS = """bbox=[0, 0, 1, 1], datetime="2024-01-01T00:00:00Z", artifact_dir=sys.argv[2], overwrite=True"""
NOTEBOOK = (
    "import os, sys\n"
    + MODEL
    + """
from mlm_export import export_item, save_item
item = export_item(sys.argv[1], model_class=Wide, model_kwargs={{"layers": {layers}, "width": {width}}},
                   input_shape=[-1, {width}], {args})
save_item(item, sys.argv[2] + "/item.json", overwrite=True, allow_outside=[os.path.dirname(sys.argv[1])])
"""
)
IN_MEMORY = """
import sys, torch
from {package}.nets import Wide
with torch.device("meta"):
    model = Wide({layers}, {width})
model.load_state_dict(torch.load(sys.argv[1], weights_only=True, mmap=True), assign=True)
from mlm_export import export_item, save_item
item = export_item(model, input_shape=[-1, {width}], {args})
save_item(item, sys.argv[2] + "/item.json", overwrite=True)
"""
#: Per script case, a process doing only its lines before ``export_item``, then the file's sha256 (its floor).
SCRIPT_FLOORS = {
    "notebook": f"import hashlib, sys\n{MODEL}\nhashlib.file_digest(open(sys.argv[1], 'rb'), 'sha256')",
    "in-memory": """
import hashlib, sys, torch
from {package}.nets import Wide
with torch.device("meta"):
    model = Wide({layers}, {width})
model.load_state_dict(torch.load(sys.argv[1], weights_only=True, mmap=True), assign=True)
with open(sys.argv[1], "rb") as f:
    hashlib.file_digest(f, "sha256")
""",
}
#: Where the class lives, per CLI case (the location's setup is in :func:`_locations`).
CLI_CASES = ("installed", "editable", "git-remote", "git-no-remote", "plain")


def shape_for(size_mb: int) -> tuple[int, int]:
    """(layers, width) of an MLP of about ``size_mb`` MiB: 4096 wide from 64 MiB, 1024 wide below."""
    width = WIDTH if size_mb >= 64 else 1024
    return max(1, round(size_mb * 2**20 / (width * width * 4))), width


def _timed(kind: str, target: str, args: list[str], env: dict[str, str], cwd: str) -> tuple[float, int, dict]:
    """Wall seconds, peak RSS (bytes) and marks (name -> seconds into the process) of one child process.

    ``cwd`` must hold no ``mlm_export``: ``python -c`` puts the working directory first on ``sys.path``, before
    ``PYTHONPATH``, so a run from a checkout would import that checkout whatever ``--before`` says.
    """
    start = time.perf_counter()
    command = [sys.executable, "-c", WRAP, kind, target, *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=cwd)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{target[:40]} {args[:2]} failed: {result.stderr[-2000:]}")
    peak = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("VMHWM ")]
    marks = {line.split()[1]: float(line.split()[2]) for line in result.stderr.splitlines() if line.startswith("MARK ")}
    return elapsed, int(peak[-1]) * 1024, marks


def _run(*command: str, cwd: Path | None = None) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed: {done.stderr[-2000:]}")


def _package(root: Path) -> Path:
    """A project directory holding the ``mlmbench_nets`` package (and a pyproject to install it)."""
    (root / PACKAGE).mkdir(parents=True)
    (root / PACKAGE / "__init__.py").write_text("")
    (root / PACKAGE / "nets.py").write_text(MODEL)
    (root / "pyproject.toml").write_text(PYPROJECT)
    return root


def _pip(*args: str) -> None:
    _run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", *args)


def _git_repository(root: Path, remote: str | None) -> Path:
    _package(root)
    _run("git", "init", "-q", cwd=root)
    _run("git", "add", ".", cwd=root)
    _run("git", "-c", "user.name=bench", "-c", "user.email=bench@example.org", "commit", "-qm", "bench", cwd=root)
    if remote:
        _run("git", "remote", "add", "origin", remote, cwd=root)
    return root


def _locations(tmp: Path) -> dict[str, dict[str, str]]:
    """Per case, the environment that puts the class's location on the path (each location set up for real)."""
    target, prefix = tmp / "target", tmp / "prefix"
    _pip("--target", str(target), str(_package(tmp / "src-installed")))
    _pip("--prefix", str(prefix), "-e", str(_package(tmp / "src-editable")))
    site_dir = next(prefix.glob("lib*/python*/site-packages"))
    return {
        "installed": {"PYTHONPATH": str(target)},
        "editable": {"BENCH_SITE_DIR": str(site_dir)},
        "git-remote": {"PYTHONPATH": str(_git_repository(tmp / "git-remote", "https://github.com/example/x.git"))},
        "git-no-remote": {"PYTHONPATH": str(_git_repository(tmp / "git-no-remote", None))},
        "plain": {"PYTHONPATH": str(_package(tmp / "plain"))},
    }


def _with_path(env: dict[str, str], checkout: str, location: dict[str, str]) -> dict[str, str]:
    path = [checkout, *([location["PYTHONPATH"]] if "PYTHONPATH" in location else [])]
    return {**env, **location, "PYTHONPATH": os.pathsep.join(path)}


def _export_args(path: Path, output: Path, layers: int, width: int) -> list[str]:
    return ["export", str(path), "--model-class", ENTRYPOINT, "--model-kwargs",
            json.dumps({"layers": layers, "width": width}), f"--input-shape=-1,{width}", "--bbox", "0", "0", "1", "1",
            "--datetime", "2024-01-01T00:00:00Z", "--overwrite", "-o", str(output)]  # fmt: skip


def _write_weights(tmp: Path, layers: int, width: int) -> dict[str, Path]:
    import torch
    from safetensors.torch import save_file

    namespace: dict[str, object] = {}
    exec(compile(MODEL, "<model>", "exec"), namespace)  # noqa: S102 - our own class, above
    with torch.device("meta"):
        model = namespace["Wide"](layers, width)  # type: ignore[operator]
    weights = {k: torch.randn(v.shape) for k, v in model.state_dict().items()}
    paths = {"pt": tmp / "wide.pt", "safetensors": tmp / "wide.safetensors"}
    torch.save(weights, paths["pt"])
    save_file(weights, str(paths["safetensors"]))
    return paths


def _runs(tmp: Path, layers: int, width: int, before: str | None) -> dict[str, tuple[str, str, list[str], dict]]:
    """Every process of a round: name -> (kind, module or code, argv, env)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.pop("PYTHONPATH", None)
    checkout = str(HERE.parent)
    paths = _write_weights(tmp, layers, width)
    locations = _locations(tmp)
    plain = _with_path(env, checkout, locations["plain"])
    runs: dict[str, tuple[str, str, list[str], dict]] = {}
    for fmt, path in paths.items():
        forward = FORWARD.format(package=PACKAGE, layers=layers, width=width, load=LOADS[fmt])
        runs[f"floor A: sha256 .{fmt}"] = ("code", HASH, [str(path)], env)
        runs[f"floor B: torch+load+forward .{fmt}"] = ("code", forward, [str(path)], plain)
    for case, code in SCRIPT_FLOORS.items():
        filled = code.replace("{package}", PACKAGE).replace("{layers}", str(layers)).replace("{width}", str(width))
        runs[f"floor S: {case}"] = ("code", filled, [str(paths["pt"])], plain)
    for case in CLI_CASES:
        args = _export_args(paths["pt"], tmp / f"{case}.json", layers, width)
        runs[case] = ("module", "mlm_export", args, _with_path(env, checkout, locations[case]))
    runs["safetensors"] = ("module", "mlm_export", _export_args(paths["safetensors"], tmp / "st.json", layers, width),
                           plain)  # fmt: skip
    for name, code in (("notebook", NOTEBOOK), ("in-memory", IN_MEMORY)):
        out = tmp / f"out-{name}"
        out.mkdir()
        filled = code.format(package=PACKAGE, layers=layers, width=width, args=EXPORT_ARGS)
        runs[name] = ("code", filled, [str(paths["pt"]), str(out)], plain)
    if before:
        runs["before: plain"] = ("module", "mlm_export", _export_args(paths["pt"], tmp / "before.json", layers, width),
                                 _with_path(env, before, locations["plain"]))  # fmt: skip
    return runs


def _check_source_code(tmp: Path, cases: list[str]) -> None:
    """Each CLI case's Item records its class where it lives (so the lookup being timed really ran)."""
    package = "https://github.com/example/mlmbench-nets"
    expected = {"installed": package, "editable": package, "git-remote": "https://raw.githubusercontent.com/example/x/"}
    for case in cases:
        item = json.loads((tmp / f"{case}.json").read_text())
        href = item["assets"].get("mlm:source_code", {}).get("href", "")
        commit = item["properties"].get("mlm:hyperparameters", {}).get("source_code.commit")
        found = {"git-no-remote": commit is not None and not href, "plain": not href}.get(case)
        if not (found if found is not None else href.startswith(expected[case])):
            raise RuntimeError(f"{case}: the Item does not record the class's source code as expected ({href!r}).")


def _settle(tmp: Path, name: str) -> None:
    """Before a process (untimed): a script case's output folder emptied, then every dirty page written (``sync``).

    Each process starts as a user's export does: the artifact it writes is a new file (replacing the previous
    round's 1 GiB file would add its deletion, ~0.5 s of kernel time, to the case), and the kernel is not still
    writing back an earlier process's gigabyte (which throttles a writer and made one case vary 0.8-2.4 s).
    """
    out = tmp / f"out-{name}"
    if out.is_dir():
        shutil.rmtree(out)
        out.mkdir()
    os.sync()


def case_floor(case: str, floor: dict) -> float:
    """The least a case's process can take: max(A, B), or for a script case max(B, its measured script floor).

    See the module's docstring and :data:`SCRIPT_FLOORS`: the script's lines before ``export_item``, then the file's
    sha256, then the exit, in one process.
    """
    if case in SCRIPT_FLOORS:
        return max(floor["forward_s"], floor["script_s"][case])
    return max(floor["hash_s"], floor["forward_s"])


def _floor_format(case: str) -> str:
    return "safetensors" if case == "safetensors" else "pt"


def measure(
    repeats: int = 3, before: str | None = None, size_mb: int = 1024, cases: tuple[str, ...] | None = None
) -> dict:
    """Medians of ``repeats`` interleaved rounds of every process; each case's ratios to its format's floor.

    ``cases``: only these cases (and every floor); all by default.
    """
    layers, width = shape_for(size_mb)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        runs = _runs(tmp, layers, width, before)
        if cases:
            runs = {name: run for name, run in runs.items() if name.startswith("floor") or name in cases}
        for name, (kind, target, args, env) in runs.items():  # bytecode written, page cache warm (see the docstring)
            _settle(tmp, name)
            _timed(kind, target, args, env, tmp_name)
        _check_source_code(tmp, [case for case in CLI_CASES if case in runs])
        timings: dict[str, list[tuple[float, int, dict]]] = {name: [] for name in runs}
        for _ in range(repeats):
            for name, (kind, target, args, env) in runs.items():
                _settle(tmp, name)
                timings[name].append(_timed(kind, target, args, env, tmp_name))
        weights = (tmp / "wide.pt").stat().st_size
    medians = {
        name: (statistics.median(t for t, _, _ in values), statistics.median(r for _, r, _ in values),
               {mark: statistics.median(m[mark] for _, _, m in values) for mark in values[0][2]})
        for name, values in timings.items()
    }  # fmt: skip
    floors = {}
    for fmt in LOADS:
        hashed, forward = medians[f"floor A: sha256 .{fmt}"], medians[f"floor B: torch+load+forward .{fmt}"]
        floors[fmt] = {"hash_s": hashed[0], "forward_s": forward[0], "floor_s": max(hashed[0], forward[0]),
                       "forward_rss": forward[1], "hash_only_s": hashed[2]["hash"],
                       "imported_s": forward[2]["imported"], "loaded_s": forward[2]["loaded"],
                       "exit_s": forward[0] - forward[2]["forwarded"],
                       "script_s": {case: medians[f"floor S: {case}"][0] for case in SCRIPT_FLOORS}}  # fmt: skip
    cases = {}
    for name, (seconds, rss, _marks) in medians.items():
        if name.startswith("floor"):
            continue
        floor = floors[_floor_format(name)]
        own = case_floor(name, floor)
        cases[name] = {"s": seconds, "rss": rss, "floor_s": own, "floor_rss": floor["forward_rss"],
                       "time_ratio": seconds / own, "rss_ratio": rss / floor["forward_rss"],
                       "overlapped_ratio": seconds / floor["floor_s"]}  # fmt: skip
    ours = {k: v for k, v in cases.items() if not k.startswith("before")}
    worst = max(ours, key=lambda k: ours[k]["time_ratio"])
    worst_rss = max(ours, key=lambda k: ours[k]["rss_ratio"])
    return {"weights_bytes": weights, "layers": layers, "width": width, "load": os.getloadavg()[0],
            "floors": floors, "cases": cases, "worst": worst, "worst_time_ratio": ours[worst]["time_ratio"],
            "worst_rss": worst_rss, "worst_rss_ratio": ours[worst_rss]["rss_ratio"]}  # fmt: skip


def table(result: dict) -> str:
    """The cases as a Markdown table (seconds, ratio to the floor, peak RSS, ratio to floor B's)."""
    lines = ["| class / input | export s | floor s | x floor | x max(A, B) | peak RSS MiB | x floor B RSS |",
             "|---" * 7 + "|"]  # fmt: skip
    for name, c in result["cases"].items():
        lines.append(f"| {name} | {c['s']:.2f} | {c['floor_s']:.2f} | {c['time_ratio']:.3f} | "
                     f"{c['overlapped_ratio']:.3f} | {c['rss'] / 2**20:.0f} | {c['rss_ratio']:.3f} |")  # fmt: skip
    for fmt, f in result["floors"].items():
        lines.append(f"| floor .{fmt}: A sha256 {f['hash_s']:.2f} s ({f['hash_only_s']:.2f} s hashing), "
                     f"B torch+load+forward {f['forward_s']:.2f} s ({f['forward_rss'] / 2**20:.0f} MiB; torch "
                     f"imported at {f['imported_s']:.2f} s, weights loaded at {f['loaded_s']:.2f} s, exit "
                     f"{f['exit_s']:.2f} s) | | | | | | |")  # fmt: skip
    scripts = ", ".join(f"{case} {s:.2f} s" for case, s in result["floors"]["pt"]["script_s"].items())
    lines.append(f"| script floors (their lines before the call, sha256, exit): {scripts} | | | | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the MLP's weights (default 1024)")
    parser.add_argument("--before", help="another checkout whose CLI is timed too (e.g. /work/main)")
    parser.add_argument("--cases", nargs="+", help="only these cases (e.g. notebook in-memory); every floor runs")
    args = parser.parse_args()
    result = measure(args.repeats, args.before, args.size_mb, tuple(args.cases or ()))
    print(table(result))
    print(f"worst: {result['worst']} {result['worst_time_ratio']:.3f} x floor; peak RSS worst {result['worst_rss']} "
          f"{result['worst_rss_ratio']:.3f} x; load {result['load']:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
