"""Publishing model Items to the local stac-fastapi-pgstac: round trip, if_exists, and every bad input."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest
import torch_models as tm
from conftest import EXAMPLES_DIR
from local_stac import LOOPBACK, GatedProxy, without_nulls
from test_collection import EXAMPLES, all_bands_example, factory_items

from mlm_export.errors import (
    AuthenticationError,
    ConfigurationError,
    ItemExistsError,
    ItemValidationError,
    STACAPIError,
)
from mlm_export.stac import api_http
from mlm_export.stac import publish as publish_module
from mlm_export.stac.local_api import LocalSTACAPI
from mlm_export.stac.publish import publish

pytestmark = LOOPBACK
HREF_BASE = "https://models.example.com/published"


def _item_files(directory: Path) -> list[Path]:
    """Item files as the test suite exports them: factory Items, the official examples, a real torch export."""
    from mlm_export.api import export_item
    from mlm_export.stac.writer import save_item

    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for document in [*factory_items(directory), all_bands_example()]:
        path = directory / f"{document['id']}.json"
        path.write_text(json.dumps(document))
        files.append(path)
    item = export_item(tm.TinyMLP(in_features=6, num_classes=3), input_shape=[-1, 6], artifact_dir=directory,
                       name="tiny-mlp", bbox=[5, 45, 10, 48], start_datetime="2020-01-01T00:00:00Z",
                       end_datetime="2021-01-01T00:00:00Z")  # fmt: skip
    files.append(save_item(item, directory / "tiny-mlp.json"))
    return [*files, *_other_exports(directory), *EXAMPLES]


def _other_exports(directory: Path) -> list[Path]:
    """The other kinds of Items the suite exports: ONNX with several inputs and outputs, a torch model with two
    inputs, one with a tuple of outputs, an image classifier with dynamic height and width."""
    import onnx
    import torch
    from onnx_models import multi_io_model

    from mlm_export.api import export_item
    from mlm_export.stac.writer import save_item

    torch.manual_seed(0)
    for name in ("onnx-multi-io", "two-inputs", "tuple-output", "conv-net"):
        (directory / name).mkdir()
    onnx_path = directory / "onnx-multi-io" / "multi-io.onnx"  # the Item's own artifact, next to it
    onnx.save(multi_io_model(), str(onnx_path))
    example = {"side": torch.randn(1, 4), "image": torch.randn(1, 3, 32, 32)}
    exports = {
        "onnx-multi-io": export_item(onnx_path, artifact_dir=directory / "onnx-multi-io"),
        "two-inputs": export_item(tm.TwoInputNet(), example_input=example, artifact_dir=directory / "two-inputs"),
        "tuple-output": export_item(tm.TupleOutputNet(in_channels=2), input_shape=[-1, 2, 64, 64],
                                    artifact_dir=directory / "tuple-output"),
        "conv-net": export_item(tm.TinyConvNet(), input_shape=[-1, 4, -1, -1], artifact_dir=directory / "conv-net",
                                classes=["a", "b", "c", "d", "e"], bands=["B02", "B03", "B04", "B08"]),
    }  # fmt: skip
    return [save_item(item, directory / name / "item.json") for name, item in exports.items()]


def _collection(api: LocalSTACAPI, collection_id: str) -> httpx.Response:
    return httpx.get(f"{api.url}/collections/{collection_id}")


def test_published_items_come_back_equal(tmp_path: Path, schema_dir: Path, stac_api: LocalSTACAPI) -> None:
    files = _item_files(tmp_path / "items")
    result = publish(files, stac_api.url, "round-trip", href_base=HREF_BASE, schema_dir=schema_dir, progress=False)
    assert result.collection_created and len(result.published) == len(files)
    collection = _collection(stac_api, "round-trip").json()
    assert collection["summaries"]["mlm:framework"]["enum"]  # created with MLM summaries
    from mlm_export.stac.publish import prepare_items

    _, sent = prepare_items(files, stac_api.url, "round-trip", href_base=HREF_BASE, schema_dir=schema_dir)
    from mlm_export.stac.validate import validate_item

    for document in sent:
        assert validate_item(document, schema_dir, check_files=False).valid  # validated once, before the rewriting
        fetched = httpx.get(result.item_url(document["id"])).json()
        fetched.pop("links"), document.pop("links")
        assert fetched == without_nulls(document)
    tiny = next(d for d in sent if d["id"].startswith("tiny-mlp-"))
    model_href = next(a["href"] for a in tiny["assets"].values() if "mlm:model" in a["roles"])
    assert model_href.startswith(f"{HREF_BASE}/") and (tmp_path / "items" / model_href[len(HREF_BASE) + 1 :]).is_file()


def test_if_exists_error_skip_replace(tmp_path: Path, schema_dir: Path, stac_api: LocalSTACAPI) -> None:
    files = _item_files(tmp_path / "items")[:3]
    publish(files[:2], stac_api.url, "exists", href_base=HREF_BASE, schema_dir=schema_dir, progress=False)
    with pytest.raises(ItemExistsError, match=r"'alps'.*409.*0 of 3 Items landed") as caught:
        publish(files, stac_api.url, "exists", href_base=HREF_BASE, schema_dir=schema_dir, progress=False)
    assert "skip" in caught.value.hint and "replace" in caught.value.hint
    assert (
        httpx.get(f"{stac_api.url}/collections/exists/items/{json.loads(files[2].read_text())['id']}").status_code
        == 404
    )
    skipped = publish(files, stac_api.url, "exists", if_exists="skip", href_base=HREF_BASE, schema_dir=schema_dir)
    assert (len(skipped.skipped), len(skipped.published), skipped.collection_created) == (2, 1, False)
    changed = json.loads(files[0].read_text())
    changed["properties"]["description"] = "retrained"
    files[0].write_text(json.dumps(changed))
    replaced = publish(
        files[:1], stac_api.url, "exists", if_exists="replace", href_base=HREF_BASE, schema_dir=schema_dir
    )
    assert replaced.published == (changed["id"],)
    stored = httpx.get(replaced.item_url(changed["id"])).json()
    assert stored["properties"]["description"] == "retrained"


def test_an_invalid_item_sends_nothing(tmp_path: Path, schema_dir: Path, stac_api: LocalSTACAPI) -> None:
    files = _item_files(tmp_path / "items")[:2]
    broken = json.loads(files[1].read_text())
    broken["properties"]["mlm:tasks"] = ["sorting"]
    files[1].write_text(json.dumps(broken))
    with pytest.raises(ItemValidationError, match=r"alps-rgb.*mlm:tasks.*Nothing was sent"):
        publish(files, stac_api.url, "invalid", href_base=HREF_BASE, schema_dir=schema_dir)
    assert _collection(stac_api, "invalid").status_code == 404


def test_a_local_model_href_needs_href_base(tmp_path: Path, schema_dir: Path, stac_api: LocalSTACAPI) -> None:
    files = _item_files(tmp_path / "items")[:1]
    with pytest.raises(ConfigurationError, match=r"asset 'model' points at the local file.*Nothing was sent"):
        publish(files, stac_api.url, "local-hrefs", schema_dir=schema_dir)
    assert _collection(stac_api, "local-hrefs").status_code == 404


def test_an_href_with_credentials_is_refused(schema_dir: Path, stac_api: LocalSTACAPI) -> None:
    secret = json.loads((EXAMPLES_DIR / "item_basic.json").read_text())
    secret["assets"]["model"]["href"] = "https://user:hunter2@example.com/model.pt"
    with pytest.raises(ConfigurationError, match="credentials") as caught:
        publish([secret], stac_api.url, "credentials", schema_dir=schema_dir)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="credentials"):
        publish([EXAMPLES[0]], stac_api.url.replace("http://", "http://u:p@"), "credentials", schema_dir=schema_dir)
    assert _collection(stac_api, "credentials").status_code == 404


def test_an_unreachable_server_is_reported(schema_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_http, "BACKOFF_S", 0.01)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(STACAPIError, match=f"{url} cannot be reached.*after 4 attempts") as caught:
        publish(EXAMPLES[:1], url, "nowhere", schema_dir=schema_dir)
    assert caught.value.published == []


def test_401_and_403_say_auth_is_needed_and_never_echo_the_token(
    schema_dir: Path, stac_api: LocalSTACAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    with GatedProxy(stac_api.url, token="s3cret-t0ken") as proxy:
        with pytest.raises(AuthenticationError, match="401.*needs auth") as caught:
            publish(EXAMPLES[:1], proxy.url, "auth", schema_dir=schema_dir)
        assert "--header" in caught.value.hint
        with pytest.raises(AuthenticationError, match="403.*refused the credentials") as caught:
            publish(
                EXAMPLES[:1], proxy.url, "auth", headers={"Authorization": "Bearer wrong-t0ken"}, schema_dir=schema_dir
            )
        assert "wrong-t0ken" not in str(caught.value)
        monkeypatch.setenv(api_http.TOKEN_ENV, "s3cret-t0ken")
        result = publish(EXAMPLES[:1], proxy.url, "auth", schema_dir=schema_dir, progress=False)
        assert result.published == (json.loads(EXAMPLES[0].read_text())["id"],)


def test_a_500_mid_bulk_is_retried_then_reported_with_what_landed(
    tmp_path: Path, schema_dir: Path, stac_api: LocalSTACAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish_module, "CHUNK_SIZE", 3)
    monkeypatch.setattr(api_http, "BACKOFF_S", 0.01)
    files = _item_files(tmp_path / "items")[:7]
    with GatedProxy(stac_api.url, fail_bulk_after=1) as proxy:
        with pytest.raises(STACAPIError, match=r"500: database is down.*after 4 attempts") as caught:
            publish(files, proxy.url, "half", href_base=HREF_BASE, schema_dir=schema_dir, progress=False)
        # the first chunk, then 4 attempts at the second, and at the third if it was sent while the second was in
        # flight (two chunks are, once one landed)
        assert proxy.bulk_requests in (1 + 4, 1 + 4 + 4)
    assert caught.value.status == 500 and "3 of 7 Items landed" in str(caught.value)
    landed = httpx.get(f"{stac_api.url}/collections/half/items", params={"limit": 100}).json()["features"]
    assert sorted(f["id"] for f in landed) == sorted(caught.value.published) and len(landed) == 3
