"""The form's guard, over a real server on 127.0.0.1: a request without the session token, or with a foreign
``Host`` (DNS rebinding), is refused with 403 before any route runs; a cookie alone never changes anything."""

from __future__ import annotations

import httpx
import pytest
from onnx_models import conv_model

from mlm_export.form.app import TOKEN_HEADER, cookie_name
from mlm_export.form.server import FormServer

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])


@pytest.fixture
def server():
    with FormServer() as running:
        yield running


def base(server: FormServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def cookies(server: FormServer) -> dict[str, str]:
    """The cookie the page sets: what a browser sends with its GET requests."""
    return {cookie_name(server.port): server.session.token}


def post(server: FormServer, route: str, values: dict) -> dict:
    """A POST of the page (token in the header); slow first calls (onnxruntime's import) are waited for."""
    answer = httpx.post(
        f"{base(server)}/api/{route}", json=values, headers={TOKEN_HEADER: server.session.token}, timeout=300
    )
    return answer.json()


@pytest.mark.parametrize("path", ["/", "/static/form.js", "/api/download/item"])
def test_no_token_or_a_wrong_one_is_403(server: FormServer, path: str) -> None:
    assert httpx.get(base(server) + path).status_code == 403
    assert httpx.get(base(server) + path, params={"token": server.session.token[:-1] + "x"}).status_code == 403
    assert httpx.post(base(server) + "/api/model", json={}).status_code == 403


def test_the_url_with_its_token_opens_the_page_and_sets_a_strict_cookie(server: FormServer) -> None:
    answer = httpx.get(server.url)
    assert answer.status_code == 200 and "mlm-export form" in answer.text
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"mlm-export-form-token-{server.port}={server.session.token}")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["referrer-policy"] == "no-referrer"
    # the cookie opens pages and files (GET), e.g. the script the page loads
    assert httpx.get(base(server) + "/static/form.js", cookies=cookies(server)).status_code == 200


@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1", "127.0.0.1:1", "attacker.test"])
def test_foreign_host_is_403_even_with_the_token(server: FormServer, host: str) -> None:
    answer = httpx.get(server.url, headers={"Host": host.format(port=server.port)})
    assert answer.status_code == 403 and "Host" in answer.text


def test_localhost_with_the_port_is_allowed(server: FormServer) -> None:
    assert httpx.get(server.url, headers={"Host": f"localhost:{server.port}"}).status_code == 200


def test_a_cookie_alone_cannot_post(server: FormServer) -> None:
    """What a cross-site form could send (a cookie, no custom header) changes nothing."""
    assert httpx.post(base(server) + "/api/export", json={}, cookies=cookies(server)).status_code == 403
    answer = httpx.post(base(server) + "/api/export", json={}, headers={TOKEN_HEADER: server.session.token})
    assert answer.status_code == 400 and answer.json()["error"]["message"] == "No model file was chosen."


def test_measure_check_export_download_over_http(server: FormServer, tmp_path) -> None:
    import onnx

    onnx.save(conv_model(), str(tmp_path / "conv.onnx"))
    headers = {TOKEN_HEADER: server.session.token}
    model = {"path": str(tmp_path / "conv.onnx")}
    measured = httpx.post(base(server) + "/api/model", json=model, headers=headers, timeout=300)
    assert measured.status_code == 200
    facts = measured.json()["facts"]
    assert facts["inputs"][0]["shape"] == [-1, 3, -1, -1]
    assert facts["file"]["size"] == (tmp_path / "conv.onnx").stat().st_size
    bad = post(server, "check", {"bbox": ["0", "50", "10", "10"]})
    assert bad["valid"] is False and bad["error"]["field"] == "bbox"
    good = post(server, "check", {"bbox": ["0", "0", "10", "10"]})
    assert good["valid"] is True and good["item"]["bbox"] == [0.0, 0.0, 10.0, 10.0]
    assert "bbox=[0.0, 0.0, 10.0, 10.0]" in good["arguments"]
    made = post(server, "export", {"bbox": ["0", "0", "10", "10"]})
    item = httpx.get(base(server) + "/api/download/item", cookies=cookies(server), timeout=60)
    assert item.status_code == 200 and item.json()["id"] == made["item_id"]
    assert item.json()["assets"]["model"]["href"] == "./conv.onnx"


def test_a_converted_artifact_is_what_the_zip_holds(server: FormServer, tmp_path) -> None:
    import io
    import json
    import zipfile

    from safetensors.torch import save_file
    from torch_models import TinyConvNet

    from mlm_export.hashing import hash_file

    save_file(TinyConvNet().state_dict(), str(tmp_path / "w.safetensors"))
    values = {"path": str(tmp_path / "w.safetensors"), "model_class": "torch_models:TinyConvNet",
              "bbox": ["0", "0", "1", "1"], "artifact_format": "onnx"}  # fmt: skip
    headers = {TOKEN_HEADER: server.session.token}
    assert httpx.post(base(server) + "/api/model", json=values, headers=headers, timeout=300).status_code == 200
    made = httpx.post(base(server) + "/api/export", json=values, headers=headers, timeout=300).json()
    answer = httpx.get(base(server) + "/api/download/zip", cookies=cookies(server), timeout=60)
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    item_name = f"{made['item_id']}.json"
    assert sorted(archive.namelist()) == sorted([item_name, "TinyConvNet.onnx", "TinyConvNet.onnx.data"])
    archive.extractall(tmp_path / "out")
    assets = json.loads(archive.read(item_name))["assets"]
    for asset in assets.values():  # each file is the one the Item hashed
        assert asset["file:checksum"] == hash_file(tmp_path / "out" / asset["href"].removeprefix("./")).checksum


def test_two_forms_on_one_host_keep_their_own_cookies() -> None:
    """Browsers send a host's cookies to every port: each form's cookie is named after its port."""
    with FormServer() as first, FormServer() as second:
        with httpx.Client() as browser_like:
            browser_like.get(first.url)
            browser_like.get(second.url)  # sets its cookie beside, not over, the first one
            assert browser_like.get(base(first) + "/static/form.js").status_code == 200
            assert browser_like.get(base(second) + "/static/form.js").status_code == 200
