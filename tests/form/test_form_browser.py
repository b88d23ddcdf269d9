"""The form as a person uses it: the system Chromium (driven by Playwright, as the card tests do) clicks, types and
drags a box on the map; the Item it downloads is compared with ``export_item`` called with the same values, written
out independently here. Also: live validation shows a problem next to its field and clears it when fixed, a pickle
is refused until trusted, an upload over the cap is refused, and publishing reaches the local STAC API."""

from __future__ import annotations

import contextlib
import json
import shutil
import zipfile
from pathlib import Path

import httpx
import onnx
import pytest
import torch
from card.chromium import browser_session
from local_stac import LOOPBACK
from onnx_models import conv_model, initializer_elements, two_image_model
from safetensors.torch import save_file
from torch_models import TinyConvNet

from mlm_export import export_item, save_item
from mlm_export.form.server import FormServer
from mlm_export.hashing import hash_file

pytestmark = LOOPBACK
DATETIME = "2024-05-01T00:00:00Z"
SOURCE_URL = "https://github.com/org/tiny/blob/0123456789abcdef0123456789abcdef01234567/torch_models.py"


@pytest.fixture(scope="module")
def browser():
    yield from browser_session()


def refused(text: str) -> bool:
    """Chromium logs every 4xx answer of fetch(); the form's refusals (400, 413) are answers the page shows."""
    return text.startswith("Failed to load resource: the server responded with a status of 4")


@contextlib.contextmanager
def opened(browser, **server_options):
    """A form server and its page; on leaving: no page error, no console error, no request to another origin."""
    with FormServer(**server_options) as server:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(120_000)  # the first measure imports onnxruntime or torch's exporters: slow when busy
        errors, requests = [], []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on(
            "console",
            lambda message: message.type == "error" and not refused(message.text) and errors.append(message.text),
        )
        page.on("request", lambda request: requests.append(request.url))
        page.goto(server.url)
        try:
            yield server, page
        finally:
            context.close()
        assert errors == []
        origin = f"http://127.0.0.1:{server.port}/"
        assert [url for url in requests if not url.startswith((origin, "data:", "blob:"))] == []


def measure(page) -> str:
    page.click("#measure")
    page.wait_for_function(
        "() => ['measured', 'not measured', 'refused'].includes(document.querySelector('#measure-status').textContent)"
    )
    return page.inner_text("#measure-status")


def checked(page) -> str:
    """The validity line once the newest live check has answered."""
    page.wait_for_function("() => document.body.dataset.checking === '0'")
    return page.inner_text("#validity")


def problem(page, field: str) -> str:
    return page.locator(f'.problem[data-field="{field}"]').text_content()


def drag_box(page, west: float, south: float, east: float, north: float) -> list[float]:
    """Drag on the map from (west, north) to (east, south) with the mouse; returns the W S E N the form shows."""
    page.locator("#map").scroll_into_view_if_needed()
    box = page.locator("#map").bounding_box()

    def at(lon: float, lat: float) -> tuple[float, float]:
        return box["x"] + (lon + 180) / 360 * box["width"], box["y"] + (90 - lat) / 180 * box["height"]

    page.mouse.move(*at(west, north))
    page.mouse.down()
    page.mouse.move(*at((west + east) / 2, (south + north) / 2), steps=4)
    page.mouse.move(*at(east, south), steps=4)
    page.mouse.up()
    shown = [float(page.input_value(f"#bbox-{side}")) for side in "wsen"]
    assert shown == pytest.approx([west, south, east, north], abs=1)  # where the mouse went (the border: <1 degree)
    return shown


def make_item(page) -> str:
    assert checked(page).startswith("valid")
    page.click("#export")
    page.wait_for_function("() => document.querySelector('#export-status').textContent.startsWith('made')")
    return page.inner_text("#export-status")


def download(page, selector: str, directory: Path) -> Path:
    with page.expect_download() as info:
        page.click(selector)
    target = directory / info.value.suggested_filename
    info.value.save_as(target)
    return target


def expected_item(model: Path, directory: Path, **arguments) -> dict:
    """``export_item`` on a copy of ``model`` (same file name), saved as the form saves it."""
    directory.mkdir()
    copy = directory / model.name
    shutil.copyfile(model, copy)
    item = export_item(copy, artifact_dir=directory, **arguments)
    return json.loads(save_item(item, directory / f"{item.id}.json").read_text())


def without_timestamps(document: dict) -> dict:
    document = json.loads(json.dumps(document))
    for key in ("created", "updated"):
        document["properties"].pop(key, None)
    return document


def test_onnx_upload_filled_like_a_person_gives_export_items_item(browser, tmp_path: Path) -> None:
    model = conv_model(channels=3, classes=4)
    path = tmp_path / "conv.onnx"
    onnx.save(model, str(path))
    with opened(browser) as (_server, page):
        page.set_input_files("#model-file", str(path))
        assert measure(page) == "measured"
        assert page.inner_text('[data-fact="parameters"]') == str(initializer_elements(model))
        assert page.inner_text('[data-fact="checksum (sha2-256 multihash)"]') == hash_file(path).checksum
        row = page.locator('[data-tensor="input:image"] td')
        assert row.all_inner_texts() == ["input", "image", "[-1, 3, -1, -1]", "batch, channel, height, width",
                                         "float32", "batch, height, width"]  # fmt: skip
        page.fill("#name", "tiny-segmenter")
        page.check("#task-semantic-segmentation")
        page.select_option("#band-preset", "RGB")
        page.click("#add-scaling")
        page.select_option(".scaling-type", "z-score")
        page.fill('input[data-key="mean"]', "0.5")
        page.fill('input[data-key="stddev"]', "0.25")
        page.select_option("#resize_type", "crop")
        page.click("#classes + button + details summary")
        page.fill("#class-paste", "water, open water, #1f77b4\nforest, trees, #2CA02C\nurban\nbare, bare soil")
        page.click("#use-paste")
        page.locator(".class-colour").nth(2).fill("#ff0000")  # the colour picker of 'urban'
        bbox = drag_box(page, 5, 40, 15, 50)
        page.fill("#start_datetime", "2020-01-01T00:00:00Z")
        page.fill("#end_datetime", "2023-12-31T23:59:59Z")
        page.fill("#license", "CC-BY-4.0")
        page.fill("#doi", "10.5281/zenodo.1234567")
        page.fill("#citation", "Someone et al. (2024), A tiny segmenter")
        page.click("#add-derived")
        page.fill(".derived-href", "https://data.example.org/train")
        page.select_option(".derived-split", "train")
        assert checked(page).startswith("valid")
        assert "export_item('conv.onnx'" in page.locator("#call").text_content()
        make_item(page)
        archive = download(page, "#download-zip", tmp_path)
    with zipfile.ZipFile(archive) as opened_zip:
        opened_zip.extractall(tmp_path / "form")
    (item_file,) = (tmp_path / "form").glob("*.json")
    assert sorted(p.name for p in (tmp_path / "form").iterdir()) == ["conv.onnx", item_file.name]
    expected = expected_item(
        path, tmp_path / "expected", name="tiny-segmenter", tasks=["semantic-segmentation"],
        bands=["red", "green", "blue"], value_scaling=[{"type": "z-score", "mean": 0.5, "stddev": 0.25}],
        resize_type="crop",
        classes=[{"value": 0, "name": "water", "description": "open water", "color_hint": "1F77B4"},
                 {"value": 1, "name": "forest", "description": "trees", "color_hint": "2CA02C"},
                 {"value": 2, "name": "urban", "color_hint": "FF0000"},
                 {"value": 3, "name": "bare", "description": "bare soil"}],
        bbox=bbox, start_datetime="2020-01-01T00:00:00Z", end_datetime="2023-12-31T23:59:59Z",
        license="CC-BY-4.0", doi="10.5281/zenodo.1234567", citation="Someone et al. (2024), A tiny segmenter",
        links=[{"rel": "derived_from", "href": "https://data.example.org/train", "ml-aoi:split": "train"}],
    )  # fmt: skip
    assert without_timestamps(json.loads(item_file.read_text())) == without_timestamps(expected)
    assert (tmp_path / "form" / "conv.onnx").read_bytes() == path.read_bytes()


def test_two_image_inputs_get_a_bands_and_scaling_section_each(browser, tmp_path: Path) -> None:
    path = tmp_path / "two.onnx"
    onnx.save(two_image_model(), str(path))
    sar = 'fieldset[data-input="sar"]'
    with opened(browser) as (_server, page):
        page.set_input_files("#model-file", str(path))
        assert measure(page) == "measured"
        assert page.locator("#more-inputs fieldset").count() == 1  # optical keeps the fields above; sar gets one
        assert page.inner_text("#bands-legend") == "Bands of input 'optical', in channel order"
        page.check("#task-semantic-segmentation")
        page.select_option("#band-preset", "RGB")
        page.click("#add-scaling")
        page.select_option("#scaling .scaling-type", "z-score")
        page.fill('#scaling input[data-key="mean"]', "0.5")
        page.fill('#scaling input[data-key="stddev"]', "0.25")
        page.fill(f"{sar} .bands", "VV")  # one name for two channels
        assert checked(page).startswith("not valid")
        assert "sar" in problem(page, "bands")
        page.fill(f"{sar} .bands", "VV\nVH")
        page.click(f"{sar} .add-scaling")
        page.select_option(f"{sar} .scaling-type", "scale")
        page.fill(f'{sar} input[data-key="value"]', "0.01")
        page.fill("#datetime", DATETIME)
        assert checked(page).startswith("valid")
        assert problem(page, "bands") == ""
        make_item(page)
        item_file = download(page, "#download-item", tmp_path)
    expected = expected_item(
        path, tmp_path / "expected", tasks=["semantic-segmentation"], datetime=DATETIME,
        bands={"optical": ["red", "green", "blue"], "sar": ["VV", "VH"]},
        value_scaling={"optical": [{"type": "z-score", "mean": 0.5, "stddev": 0.25}],
                       "sar": [{"type": "scale", "value": 0.01}]},
    )  # fmt: skip
    document = json.loads(item_file.read_text())
    assert without_timestamps(document) == without_timestamps(expected)
    inputs = {i["name"]: i for i in document["properties"]["mlm:input"]}
    assert inputs["sar"]["bands"] == ["VV", "VH"]
    assert inputs["sar"]["value_scaling"] == [{"type": "scale", "value": 0.01}]


def test_safetensors_with_a_class_and_live_validation(browser, tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "weights.safetensors"
    save_file(TinyConvNet(in_channels=4, num_classes=5).state_dict(), str(path))
    with opened(browser) as (_server, page):
        page.set_input_files("#model-file", str(path))
        assert measure(page) == "not measured"  # weights only: the class is needed
        assert "model_class" in problem(page, "model_class")
        page.fill("#model_class", "torch_models:TinyConvNet")
        page.fill("#model_kwargs", '{"in_channels": 4, "num_classes": 5}')
        assert measure(page) == "measured"
        assert page.inner_text('[data-fact="parameters"]') == str(sum(p.numel() for p in TinyConvNet().parameters()))
        page.select_option("#band-preset", "RGBN")
        for name in ("water", "trees"):
            page.click("#add-class")
            page.locator(".class-name").last.fill(name)
        assert checked(page).startswith("not valid")  # two classes for five output channels
        assert "5 classes" in problem(page, "classes")
        for name in ("crops", "built", "bare"):
            page.click("#add-class")
            page.locator(".class-name").last.fill(name)
        checked(page)
        assert problem(page, "classes") == ""  # cleared once the count fits
        page.fill("#source_code", "github.com/org/repo")  # no scheme: refused, next to its field
        assert checked(page).startswith("not valid")
        assert "source_code='github.com/org/repo' is not an http(s) URL" in problem(page, "source_code")
        page.fill("#source_code", SOURCE_URL)
        for side, value in zip("wsen", ("170", "-20", "-170", "-10"), strict=True):  # across the antimeridian
            page.fill(f"#bbox-{side}", value)
        page.fill("#datetime", DATETIME)
        assert checked(page).startswith("valid")
        assert problem(page, "classes") == ""
        assert page.locator("#boxes rect").count() == 2  # drawn on both sides of the antimeridian
        make_item(page)
        item_file = download(page, "#download-item", tmp_path)
    expected = expected_item(
        path, tmp_path / "expected", model_class="torch_models:TinyConvNet",
        model_kwargs={"in_channels": 4, "num_classes": 5}, bands=["red", "green", "blue", "nir"],
        classes=[{"value": i, "name": n} for i, n in enumerate(("water", "trees", "crops", "built", "bare"))],
        bbox=[170.0, -20.0, -170.0, -10.0], datetime=DATETIME, source_code=SOURCE_URL,
    )  # fmt: skip
    document = json.loads(item_file.read_text())
    assert document["assets"]["mlm:source_code"]["href"] == SOURCE_URL
    assert document["assets"]["mlm:source_code"]["mlm:entrypoint"] == "torch_models:TinyConvNet"
    assert without_timestamps(document) == without_timestamps(expected)


def test_torchscript_by_path_bad_bbox_card_and_publish(browser, tmp_path: Path, stac_api) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(TinyConvNet()), str(path))
    secret = "s3cret-token-never-echoed"
    with opened(browser) as (_server, page):
        answers = []
        page.on("response", lambda response: answers.append(response))
        page.fill("#path", str(path))
        assert measure(page) == "measured"
        for side, value in zip("wsen", ("0", "50", "10", "10"), strict=True):  # south above north
            page.fill(f"#bbox-{side}", value)
        page.fill("#datetime", DATETIME)
        assert checked(page).startswith("not valid")
        assert "bbox" in problem(page, "bbox")
        page.fill("#bbox-s", "0")
        assert checked(page).startswith("valid") and problem(page, "bbox") == ""
        page.fill("#license", "MIT")
        make_item(page)
        card = download(page, "#download-card", tmp_path)
        page.fill("#api_url", stac_api.url)
        page.fill("#collection_id", "form-tests")
        page.fill("#href_base", "https://models.example.org/form")
        page.fill("#api_token", secret)
        page.click("#publish")
        page.wait_for_function("() => document.querySelector('#publish-status').textContent.startsWith('published')")
        assert page.input_value("#api_token") == ""
        bodies = [r.text() for r in answers if "/api/" in r.url]
        assert bodies and not any(secret in body for body in bodies)
        status = page.inner_text("#publish-status")
    expected = expected_item(path, tmp_path / "expected", bbox=[0.0, 0.0, 10.0, 10.0], datetime=DATETIME, license="MIT")
    assert status == f"published {expected['id']} to form-tests"
    stored = httpx.get(f"{stac_api.url}/collections/form-tests/items/{expected['id']}").json()
    assert stored["assets"]["model"]["href"] == "https://models.example.org/form/scripted.pt"
    assert stored["properties"]["mlm:total_parameters"] == expected["properties"]["mlm:total_parameters"]
    assert expected["id"] in card.read_text() and "MIT" in card.read_text()


def test_a_pickle_is_refused_until_trusted(browser, tmp_path: Path) -> None:
    path = tmp_path / "full.pt"
    torch.save(TinyConvNet(), str(path))
    with opened(browser) as (_server, page):
        page.set_input_files("#model-file", str(path))
        assert measure(page) == "not measured"
        assert "pickled Python objects" in problem(page, "trust_pickle")
        assert page.locator("#facts").is_hidden()
        page.check("#trust_pickle")
        assert measure(page) == "measured"
        assert problem(page, "trust_pickle") == ""
        assert page.inner_text('[data-fact="parameters"]') == str(sum(p.numel() for p in TinyConvNet().parameters()))


def test_an_upload_over_the_cap_is_refused(browser, tmp_path: Path) -> None:
    path = tmp_path / "conv.onnx"
    onnx.save(conv_model(), str(path))
    with opened(browser, max_upload=path.stat().st_size - 1) as (server, page):
        page.set_input_files("#model-file", str(path))
        assert measure(page) == "refused"
        assert "larger than the form's cap" in problem(page, "model")
        assert server.session.model_path is None
