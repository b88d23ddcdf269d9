"""Scientific extension: sci:doi, sci:citation, sci:publications, and arXiv DOIs from torchgeo weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mlm_export import export_item, save_item, validate_item  # noqa: E402
from mlm_export.errors import ConfigurationError  # noqa: E402
from mlm_export.provenance.science import arxiv_doi, normalise_doi, science_from  # noqa: E402


@pytest.mark.parametrize(
    ("url", "doi"),
    [
        ("https://arxiv.org/abs/2211.07044", "10.48550/arXiv.2211.07044"),
        ("https://arxiv.org/abs/2211.07044v2", "10.48550/arXiv.2211.07044"),
        ("https://arxiv.org/pdf/2103.00020.pdf", "10.48550/arXiv.2103.00020"),
        ("http://arxiv.org/abs/math/0309136", "10.48550/arXiv.math/0309136"),
        ("https://openaccess.thecvf.com/paper.pdf", None),
        ("https://arxiv.org/list/cs.CV", None),
    ],
)
def test_arxiv_doi(url: str, doi: str | None) -> None:
    assert arxiv_doi(url) == doi


def test_doi_forms_are_normalised_and_bad_ones_refused() -> None:
    assert normalise_doi("https://doi.org/10.1109/CVPR.2016.90", "doi") == "10.1109/CVPR.2016.90"
    assert normalise_doi("doi:10.1109/CVPR.2016.90", "doi") == "10.1109/CVPR.2016.90"
    for bad in ("10.12/x", "https://example.org/10.1109/x", "1109/CVPR", "10.1109/ has space"):
        with pytest.raises(ConfigurationError, match="not a DOI"):
            normalise_doi(bad, "doi")
    with pytest.raises(ConfigurationError, match="needs a 'doi' or a 'citation'"):
        science_from(publications=[{"title": "no doi"}])
    with pytest.raises(ConfigurationError, match="citation"):
        science_from(citation="  ")


def test_references_from_arguments_validate(tmp_path: Path) -> None:
    item = export_item(
        torch.nn.Linear(3, 1),
        input_shape=[-1, 3],
        tasks=["regression"],
        artifact_dir=tmp_path,
        doi="10.5281/zenodo.1234567",
        citation="Doe, J. (2026). A linear model. Zenodo.",
        publications=["10.1109/CVPR.2016.90", {"citation": "An unpublished report (2025)."}],
    )
    path = save_item(item, tmp_path / "item.json")
    report = validate_item(path)
    assert report.valid and "https://stac-extensions.github.io/scientific/v1.0.0/schema.json" in report.schemas
    document = json.loads(path.read_text())
    props = document["properties"]
    assert props["sci:doi"] == "10.5281/zenodo.1234567"
    assert props["sci:citation"].startswith("Doe, J.")
    assert props["sci:publications"] == [{"doi": "10.1109/CVPR.2016.90"}, {"citation": "An unpublished report (2025)."}]
    cite_as = sorted(link["href"] for link in document["links"] if link["rel"] == "cite-as")
    assert cite_as == ["https://doi.org/10.1109/CVPR.2016.90", "https://doi.org/10.5281/zenodo.1234567"]


def test_torchgeo_weights_publication_gives_cite_as_and_arxiv_doi(tmp_path: Path) -> None:
    tgm = pytest.importorskip("torchgeo.models")
    from mlm_export.integrations.torchgeo import export_torchgeo

    weights = tgm.ResNet18_Weights.SENTINEL2_RGB_MOCO
    publication = weights.meta["publication"]
    expected = "10.48550/arXiv." + publication.rstrip("/").split("/")[-1]
    model = tgm.resnet18(weights=None, in_chans=3, num_classes=2)
    item = export_torchgeo(model, weights=weights, artifact_dir=tmp_path, input_shape=[-1, 3, 32, 32])
    path = save_item(item, tmp_path / "item.json")
    assert validate_item(path).valid
    document = json.loads(path.read_text())
    assert {"doi": expected} in document["properties"]["sci:publications"]
    cite_as = [link["href"] for link in document["links"] if link["rel"] == "cite-as"]
    assert publication in cite_as and f"https://doi.org/{expected}" in cite_as
    assert "sci:doi" not in document["properties"]  # the weights have no DOI of their own
