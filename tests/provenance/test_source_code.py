"""mlm:source_code: git work trees made in temp dirs (commit, dirty, untracked, no remote), packages, __main__."""

from __future__ import annotations

import importlib.metadata
import json
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from git_repos import make_repo_fixture  # noqa: E402, F401 - registers the make_repo fixture

from mlm_export import export_item, save_item, validate_item  # noqa: E402
from mlm_export.provenance.source_code import (  # noqa: E402
    SOURCE_CODE_KEY,
    describe_source_code,
    entrypoint_of_item,
    https_remote,
    raw_file_url,
)

GITHUB = "git@github.com:example-org/example-models.git"


def test_committed_file_with_github_remote_links_raw_file_at_the_commit(make_repo) -> None:
    repo = make_repo(GITHUB)
    commit = repo.git("rev-parse", "HEAD")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean, committed tree with a remote warns about nothing
        found = describe_source_code(repo.module.Net())
    assert found is not None
    assert found.entrypoint == f"{repo.package}.models:Net"
    assert found.href == f"https://raw.githubusercontent.com/example-org/example-models/{commit}/{repo.relative_path}"
    assert found.media_type == "text/x-python"
    assert found.commit == commit and not found.dirty
    assert "https://github.com/example-org/example-models" in found.description


def test_factory_entrypoint_from_model_class(make_repo) -> None:
    repo = make_repo("https://gitlab.com/group/project.git")
    commit = repo.git("rev-parse", "HEAD")
    found = describe_source_code("weights.safetensors", model_class=f"{repo.package}.models:build")
    assert found is not None and found.entrypoint == f"{repo.package}.models:build"
    assert found.href == f"https://gitlab.com/group/project/-/raw/{commit}/{repo.relative_path}"


def test_uncommitted_change_warns_and_is_noted(make_repo) -> None:
    repo = make_repo(GITHUB)
    path = repo.root / repo.relative_path
    path.write_text(path.read_text() + "\n# an edit\n")
    with pytest.warns(UserWarning, match="uncommitted changes"):
        found = describe_source_code(repo.module.Net())
    assert found is not None and found.dirty
    assert "uncommitted changes" in found.description


def test_untracked_file_warns(make_repo) -> None:
    repo = make_repo(GITHUB, commit=False)
    with pytest.warns(UserWarning, match="is not committed"):
        found = describe_source_code(repo.module.Net())
    assert found is not None and found.dirty and "not committed" in found.description


def test_repository_without_remote_records_the_commit_and_no_url(make_repo, tmp_path: Path) -> None:
    repo = make_repo(None)
    commit = repo.git("rev-parse", "HEAD")
    with pytest.warns(UserWarning, match="no public remote"):
        found = describe_source_code(repo.module.Net())
    assert found is not None and found.commit == commit and found.href is None
    with pytest.warns(UserWarning, match="no public remote"):
        item = export_item(
            repo.module.Net(), input_shape=[-1, 3, 8, 8], tasks=["classification"], artifact_dir=tmp_path
        )
    assert SOURCE_CODE_KEY not in item.assets  # no URL, no asset (a local path could not be published)
    hyper = item.properties["mlm:hyperparameters"]
    assert hyper["source_code.commit"] == commit
    assert hyper["source_code.entrypoint"] == f"{repo.package}.models:Net" == entrypoint_of_item(item.to_dict())
    assert hyper["source_code.path"] == repo.relative_path
    assert validate_item(item).valid


def test_installed_package_links_its_repository_with_the_installed_version() -> None:
    torchvision = pytest.importorskip("torchvision")
    found = describe_source_code(torchvision.models.resnet18(weights=None))
    assert found is not None
    assert found.entrypoint == "torchvision.models.resnet:ResNet"
    assert found.href == "https://github.com/pytorch/vision"  # Home-page of torchvision's metadata
    assert found.media_type == "text/html"
    assert found.package_version == importlib.metadata.version("torchvision")
    assert importlib.metadata.version("torchvision") in found.description


def test_class_in_main_or_a_function_has_no_source_asset(tmp_path: Path) -> None:
    class Local(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    Main = type("Main", (torch.nn.Module,), {"forward": lambda self, x: x + 1, "__module__": "__main__"})
    for model in (Local(), Main()):
        with pytest.warns(UserWarning, match="no importable entrypoint"):
            assert describe_source_code(model) is None
    with pytest.warns(UserWarning, match="no importable entrypoint"):
        item = export_item(Local(), input_shape=[-1, 3], artifact_dir=tmp_path, tasks=["regression"])
    assert SOURCE_CODE_KEY not in item.assets


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("git@github.com:o/r.git", "https://github.com/o/r"),
        ("ssh://git@github.com/o/r.git", "https://github.com/o/r"),
        ("https://user:secret@gitlab.com/g/p.git", "https://gitlab.com/g/p"),
        ("https://github.com/o/r/", "https://github.com/o/r"),
        ("/srv/git/repo.git", None),
        ("file:///srv/git/repo.git", None),
    ],
)
def test_remote_urls_are_normalised_to_https(remote: str, expected: str | None) -> None:
    assert https_remote(remote) == expected


def test_raw_url_only_for_known_hosts() -> None:
    assert raw_file_url("https://bitbucket.org/o/r", "abc", "m.py") == "https://bitbucket.org/o/r/raw/abc/m.py"
    assert raw_file_url("https://git.example.org/o/r", "abc", "m.py") is None


def test_export_records_entrypoint_and_kwargs_so_the_item_rebuilds_the_model(make_repo, tmp_path: Path) -> None:
    repo = make_repo(GITHUB)
    model = repo.module.Net(in_channels=5, num_classes=7)
    item = export_item(
        model,
        input_shape=[-1, 5, 16, 16],
        model_kwargs={"in_channels": 5, "num_classes": 7},
        tasks=["classification"],
        artifact_dir=tmp_path / "out",
    )
    path = save_item(item, tmp_path / "out" / "item.json")
    assert validate_item(path).valid
    document = json.loads(path.read_text())
    asset = document["assets"][SOURCE_CODE_KEY]
    assert asset["roles"] == ["mlm:source_code", "code", "metadata"]
    assert asset["mlm:entrypoint"] == f"{repo.package}.models:Net"
    kwargs = document["properties"]["mlm:hyperparameters"]["model_kwargs"]
    assert kwargs == {"in_channels": 5, "num_classes": 7}
    # The Item alone rebuilds the model: entrypoint + model_kwargs + the weights asset.
    import pkgutil

    from safetensors.torch import load_file

    rebuilt = pkgutil.resolve_name(asset["mlm:entrypoint"])(**kwargs)
    weights = path.parent / document["assets"]["model"]["href"]
    rebuilt.load_state_dict(load_file(weights))
    x = torch.rand(2, 5, 16, 16)
    with torch.inference_mode():
        assert torch.equal(rebuilt.eval()(x), model.eval()(x))


def test_model_kwargs_that_are_not_json_are_left_out_with_a_warning(make_repo, tmp_path: Path) -> None:
    repo = make_repo(GITHUB)
    with pytest.warns(UserWarning, match="model_kwargs are not JSON"):
        item = export_item(
            repo.module.Net(),
            input_shape=[-1, 3, 8, 8],
            model_kwargs={"in_channels": 3, "act": torch.nn.ReLU},
            tasks=["classification"],
            artifact_dir=tmp_path,
        )
    assert "model_kwargs" not in item.properties.get("mlm:hyperparameters", {})


def test_compiled_models_and_files_have_no_class_of_their_own() -> None:
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    traced = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    for source in (scripted, traced, "weights.safetensors", object()):
        assert describe_source_code(source) is None


REPO_TREE = "https://github.com/org/repo/tree/0123456789abcdef0123456789abcdef01234567/models"


def test_given_source_code_wins_over_detection_and_runs_none(make_repo, tmp_path: Path) -> None:
    repo = make_repo(GITHUB)  # a work tree with a remote: detection would link its raw file
    path = repo.root / repo.relative_path
    path.write_text(path.read_text() + "\n# an edit\n")  # detection would warn about it: none runs, none warns
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        item = export_item(
            repo.module.Net(), input_shape=[-1, 3, 8, 8], tasks=["classification"], artifact_dir=tmp_path,
            source_code=REPO_TREE,
        )  # fmt: skip
    asset = item.assets[SOURCE_CODE_KEY].to_dict()
    assert asset == {
        "href": REPO_TREE, "type": "text/html", "title": f"Source code of {repo.package}.models:Net",
        "description": "Given by the publisher.", "roles": ["mlm:source_code", "code", "metadata"],
        "mlm:entrypoint": f"{repo.package}.models:Net",
    }  # fmt: skip
    assert "source_code.commit" not in item.properties.get("mlm:hyperparameters", {})


def test_given_source_code_of_a_file_without_class_has_no_entrypoint(tmp_path: Path) -> None:
    model = tmp_path / "net.pt"
    torch.jit.script(torch.nn.Linear(3, 2)).save(str(model))
    raw = "https://raw.githubusercontent.com/org/repo/0123abc/net.py"
    item = export_item(model, input_shape=[-1, 3], tasks=["regression"], source_code=raw)
    asset = item.assets[SOURCE_CODE_KEY].to_dict()
    assert asset["href"] == raw and asset["type"] == "text/x-python" and "mlm:entrypoint" not in asset
    assert asset["roles"] == ["mlm:source_code", "code", "metadata"]
    given = {"href": REPO_TREE, "entrypoint": "models.net:build"}
    item = export_item(model, input_shape=[-1, 3], tasks=["regression"], source_code=given)
    assert item.assets[SOURCE_CODE_KEY].extra_fields["mlm:entrypoint"] == "models.net:build"


@pytest.mark.parametrize(
    "value", ["github.com/org/repo", "ftp://example.org/code", "file:///home/me/net.py", "https:// x", 42,
              {"href": REPO_TREE, "entrypoint": "not an entrypoint"}],
)  # fmt: skip
def test_source_code_that_is_no_http_url_is_refused_before_measuring(value: object, tmp_path: Path) -> None:
    from mlm_export.errors import ConfigurationError

    missing = tmp_path / "never-read.pt"  # the check comes first: the file is never opened
    with pytest.raises(ConfigurationError, match="source_code") as excinfo:
        export_item(missing, source_code=value)
    assert excinfo.value.hint
