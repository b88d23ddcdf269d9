"""The session: uploads streamed to its temporary directory under a cap (over it: 413, nothing kept), safe names,
and every temporary file removed when the server stops."""

from __future__ import annotations

import httpx
import pytest

from mlm_export.errors import ConfigurationError
from mlm_export.form.app import TOKEN_HEADER
from mlm_export.form.server import FormServer
from mlm_export.form.session import upload_name

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])


def _chunks(count: int, size: int):
    for _ in range(count):
        yield b"\0" * size


def test_an_upload_over_the_cap_is_refused_while_it_streams_and_nothing_is_kept() -> None:
    with FormServer(max_upload=10_000) as server:
        url = f"http://127.0.0.1:{server.port}/api/upload"
        headers = {TOKEN_HEADER: server.session.token, "X-File-Name": "big.onnx"}
        # chunked: no Content-Length, so only the streamed count can refuse it
        answer = httpx.post(url, content=_chunks(8, 4096), headers=headers)
        assert answer.status_code == 413 and "larger than the form's cap" in answer.json()["error"]["message"]
        declared = httpx.post(url, content=b"\0" * 10_001, headers=headers)
        assert declared.status_code == 413
        assert list(server.session.directory.iterdir()) == []
        assert server.session.model_path is None
        fits = httpx.post(url, content=b"\0" * 10_000, headers=headers)
        assert fits.status_code == 200 and fits.json() == {"name": "big.onnx", "size": 10_000}


def test_temporary_files_are_removed_when_the_server_stops(tmp_path) -> None:
    server = FormServer().start()
    directory = server.session.directory
    url = f"http://127.0.0.1:{server.port}/api/upload"
    httpx.post(url, content=b"x" * 100, headers={TOKEN_HEADER: server.session.token, "X-File-Name": "m.pt"})
    assert [p.name for p in directory.rglob("*") if p.is_file()] == ["m.pt"]
    server.close()
    assert not directory.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url, timeout=2)


@pytest.mark.parametrize(
    ("given", "safe"),
    [("model.onnx", "model.onnx"), ("../../etc/x.pt", "x.pt"), ("a b;c.safetensors", "a_b_c.safetensors"),
     (".hidden.pt2", "hidden.pt2")],
)  # fmt: skip
def test_upload_names_are_reduced_to_a_safe_file_name(given: str, safe: str) -> None:
    assert upload_name(given) == safe


def test_an_upload_without_a_model_suffix_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="not a model file"):
        upload_name("notes.txt")


def test_a_live_check_that_waited_behind_a_newer_one_is_skipped(tmp_path) -> None:
    import threading
    import time

    import onnx
    from onnx_models import conv_model

    from mlm_export.form.session import FormSession

    session = FormSession()
    try:
        onnx.save(conv_model(), str(tmp_path / "conv.onnx"))
        session.choose_path(str(tmp_path / "conv.onnx"))
        results: dict[str, object] = {}
        with session._lock:  # a check (or export) is running
            older = threading.Thread(target=lambda: results.update(older=session.build({"license": "MIT"})))
            older.start()
            while session._checks < 1:
                time.sleep(0.01)
            newer = threading.Thread(target=lambda: results.update(newer=session.build({"license": "CC0-1.0"})))
            newer.start()
            while session._checks < 2:
                time.sleep(0.01)
        older.join(60)
        newer.join(60)
        assert results["older"] is None
        item, _said = results["newer"]
        assert item["properties"]["license"] == "CC0-1.0"
        assert [p.name for p in session.directory.iterdir()] == []  # scratch folders removed
    finally:
        session.close()


def test_a_new_upload_replaces_the_previous_one() -> None:
    with FormServer() as server:
        url = f"http://127.0.0.1:{server.port}/api/upload"
        headers = {TOKEN_HEADER: server.session.token}
        httpx.post(url, content=b"a" * 10, headers={**headers, "X-File-Name": "first.onnx"})
        httpx.post(url, content=b"b" * 20, headers={**headers, "X-File-Name": "second.onnx"})
        files = [p for p in server.session.directory.rglob("*") if p.is_file()]
        assert [(p.name, p.read_bytes()) for p in files] == [("second.onnx", b"b" * 20)]
        assert server.session.model_path == files[0]
