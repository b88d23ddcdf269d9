"""The form's web application: one page, its static files and a small JSON API over one :class:`FormSession`.

Security, as Jupyter does it: the server listens on 127.0.0.1 only (:mod:`mlm_export.form.server`); every request
must come with a ``Host`` of ``127.0.0.1:PORT`` or ``localhost:PORT`` (another name is DNS rebinding: 403) and with
the session's secret token: ``?token=`` in the URL (the page then keeps it in a strict same-site cookie), and for
every request that changes something (POST) in the ``X-MLM-Form-Token`` header, which another site cannot set. A
request without it is refused with 403 before any route runs. Responses forbid framing, caching and referrers
(the token is in the URL), and the page may load nothing from another origin (Content-Security-Policy).
"""

from __future__ import annotations

import json
import logging
import secrets
import zipfile
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from http.cookies import SimpleCookie
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from mlm_export.errors import ItemValidationError, MLMExportError, UploadTooLargeError
from mlm_export.form import fields
from mlm_export.form.session import FormSession

logger = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

TOKEN_HEADER = "x-mlm-form-token"
COOKIE = "mlm-export-form-token"


def cookie_name(port: int) -> str:
    """The session cookie's name: one per port, since browsers share cookies across the ports of a host."""
    return f"{COOKIE}-{port}"


SECURITY_HEADERS = (
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
     b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
)  # fmt: skip


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _same(given: str | None, token: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), token.encode())


class Guard:
    """ASGI middleware: Host check, token check, security headers (see the module's docstring)."""

    def __init__(self, app: ASGIApp, token: str, hosts: Callable[[], Iterable[str]], port: Callable[[], int]) -> None:
        self.app, self.token, self.hosts, self.port = app, token, hosts, port

    def refusal(self, scope: Scope) -> str | None:
        """Why a request is refused (None: it passes)."""
        if _header(scope, b"host") not in set(self.hosts()):
            return "Host not allowed"
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        if _same(query, self.token) or _same(_header(scope, TOKEN_HEADER.encode()), self.token):
            return None
        cookie = SimpleCookie(_header(scope, b"cookie") or "").get(cookie_name(self.port()))
        if scope["method"] in ("GET", "HEAD") and cookie is not None and _same(cookie.value, self.token):
            return None
        return "a valid token is required"

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        """Refuse (403) or pass the request on; every response gets the security headers."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        reason = self.refusal(scope)

        async def secured(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        if reason is not None:
            body = f"403 Forbidden: {reason}.".encode()
            headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
            await secured({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return None
        return await self.app(scope, receive, secured)


def error_answer(error: BaseException) -> dict[str, Any]:
    """A typed error of the library as the page shows it: message, hint, field (and every validation problem)."""
    if isinstance(error, MLMExportError):
        answer: dict[str, Any] = {"message": error.message, "hint": error.hint, "field": fields.field_of_error(error)}
    else:  # a bug: its type only (never a value that could echo a secret)
        answer = {"message": f"Internal error ({type(error).__name__}).", "hint": None, "field": "general"}
    return {"error": answer, "problems": problems_of(error)}


def problems_of(error: BaseException) -> list[dict[str, str]]:
    """The validation problems an :class:`ItemValidationError` carries, each with its form field."""
    if not isinstance(error, ItemValidationError):
        return []
    return [
        {"path": p.path, "message": p.message, "field": fields.field_of_pointer(p.path)}
        for p in error.problems
        if hasattr(p, "path")
    ]


def _page(session: FormSession, port: Callable[[], int]) -> str:
    import jinja2

    from mlm_export.card.map import land_path

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("mlm_export.form", "templates"), autoescape=True, trim_blocks=True
    )
    options = json.dumps(fields.form_options()).replace("<", "\\u003c")
    return environment.get_template("form.html.j2").render(
        token=session.token, options=options, land=land_path(), max_upload=session.max_upload, port=port()
    )


def create_app(session: FormSession, hosts: Callable[[], Iterable[str]], port: Callable[[], int] = lambda: 0) -> Any:
    """The FastAPI application of ``session``, wrapped in :class:`Guard`.

    Args:
        session: the form session (token, temporary directory, model).
        hosts: the ``Host`` header values allowed (``127.0.0.1:PORT``, ``localhost:PORT``), asked per request.
        port: the port the server listens on (for the page).
    """
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    static = resources.files("mlm_export.form").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", response_class=HTMLResponse)
    def page() -> Any:
        response = HTMLResponse(_page(session, port))
        response.set_cookie(cookie_name(port()), session.token, httponly=True, samesite="strict", path="/")
        return response

    @app.post("/api/upload")
    async def upload(request: Request) -> Any:
        length = request.headers.get("content-length")
        name = request.headers.get("x-file-name")
        try:
            path = await session.receive_upload(name, request.stream(), int(length) if length else None)
        except MLMExportError as exc:
            return JSONResponse(error_answer(exc), status_code=413 if isinstance(exc, UploadTooLargeError) else 400)
        return {"name": path.name, "size": path.stat().st_size}

    for route, work in (("model", _inspect), ("check", _check), ("export", _export), ("publish", _publish)):
        app.add_api_route(f"/api/{route}", _json_route(session, work), methods=["POST"])
    _add_downloads(app, session)
    return Guard(app, session.token, hosts, port)


def _json_route(session: FormSession, work: Callable[[FormSession, Mapping[str, Any]], Mapping[str, Any]]) -> Any:
    """A POST route: the JSON body -> ``work(session, values)`` in a worker thread -> JSON (a typed error: 400)."""

    def answer(values: Mapping[str, Any]) -> Any:
        try:
            return JSONResponse(dict(work(session, values)))
        except MLMExportError as exc:
            return JSONResponse(error_answer(exc), status_code=400)
        except Exception as exc:  # a bug: the page says so (its type only), the log has the traceback
            logger.exception("mlm-export form: %s failed", work.__name__)
            return JSONResponse(error_answer(exc), status_code=500)

    async def route(request: Request) -> Any:
        return await run_in_threadpool(answer, await _json(request))

    return route


def _inspect(session: FormSession, values: Mapping[str, Any]) -> dict[str, Any]:
    if values.get("path"):
        session.choose_path(str(values["path"]))
    facts, said = session.inspect(fields.measure_arguments(values))
    return {"facts": facts, "notes": said.notes, "warnings": said.warnings}


def _check(session: FormSession, values: Mapping[str, Any]) -> dict[str, Any]:
    try:
        arguments = fields.export_arguments(values)
    except MLMExportError as exc:
        return {"valid": False, **error_answer(exc)}
    call = fields.python_call(session.model().name, arguments)
    try:
        built = session.build(arguments)
    except MLMExportError as exc:
        return {"valid": False, "arguments": call, **error_answer(exc)}
    if built is None:
        return {"stale": True}
    item, said = built
    return {"valid": True, "item": item, "problems": [], "arguments": call, "warnings": said.warnings}


def _export(session: FormSession, values: Mapping[str, Any]) -> dict[str, Any]:
    path, said = session.export(fields.export_arguments(values))
    files = sorted(p.name for p in path.parent.iterdir() if p.is_file())
    return {"item_id": path.stem, "files": files, "notes": said.notes, "warnings": said.warnings}


def _publish(session: FormSession, values: Mapping[str, Any]) -> dict[str, Any]:
    """``publish`` of the last export; the token goes into the Authorization header only, never into an answer."""
    from mlm_export.stac.publish import publish

    secret = str(values.get("api_token") or "").strip()
    result = publish(
        session.last_export(),
        str(values.get("api_url") or ""),
        str(values.get("collection_id") or ""),
        if_exists=str(values.get("if_exists") or "error"),
        headers={"Authorization": f"Bearer {secret}"} if secret else None,
        href_base=str(values.get("href_base") or "").strip() or None,
        progress=False,
    )
    return {
        "api_url": result.url,
        "collection_id": result.collection_id,
        "published": list(result.published),
        "skipped": list(result.skipped),
        "item_urls": [result.item_url(i) for i in result.published],
    }


def _add_downloads(app: Any, session: FormSession) -> None:
    """GET routes of the last export: the Item JSON, a zip of its folder (Item + artifact), its model card."""

    @app.get("/api/download/item")
    def download_item() -> Any:
        path = session.last_export()
        return FileResponse(path, media_type="application/geo+json", filename=path.name)

    @app.get("/api/download/zip")
    def download_zip() -> Any:
        path = session.last_export()
        return FileResponse(_zip(path), media_type="application/zip", filename=f"{path.stem}.zip")

    @app.get("/api/download/card")
    def download_card() -> Any:
        from mlm_export.card import render_card

        path = session.last_export()
        html = render_card(path, "html")
        return Response(html, media_type="text/html", headers=_attachment(f"{path.stem}-card.html"))

    @app.exception_handler(MLMExportError)
    async def typed_error(request: Request, exc: MLMExportError) -> Any:
        return JSONResponse(error_answer(exc), status_code=404)


async def _json(request: Request) -> dict[str, Any]:
    try:
        values = json.loads(await request.body())
    except ValueError:
        raise HTTPException(400, "the body is not JSON") from None
    if not isinstance(values, dict):
        raise HTTPException(400, "the body is not a JSON object")
    return values


def _attachment(name: str) -> dict[str, str]:
    return {"content-disposition": f'attachment; filename="{name}"'}


def _zip(item: Path) -> Path:
    """The Item and the local files its assets name, in one zip beside its folder, written once.

    On disk, since a model can be gigabytes: the model stored, the JSON deflated. A source file converted to another
    format (``artifact_format``) is not one of the Item's assets and stays out.
    """
    from urllib.parse import unquote

    target = item.parent.with_suffix(".zip")
    if target.exists():
        return target
    assets = json.loads(item.read_text(encoding="utf-8")).get("assets") or {}
    files = [item]
    for asset in assets.values():
        href = str(asset.get("href") or "")
        path = (item.parent / unquote(href)).resolve() if "://" not in href else None
        if path is not None and path.parent == item.parent.resolve() and path.is_file() and path not in files:
            files.append(path)
    partial = item.parent.with_suffix(".zip.part")
    with zipfile.ZipFile(partial, "w") as archive:
        for path in files:
            kind = zipfile.ZIP_DEFLATED if path.suffix == ".json" else zipfile.ZIP_STORED
            archive.write(path, path.name, compress_type=kind)
    partial.replace(target)
    return target
