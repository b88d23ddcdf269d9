"""HTTP to a STAC API: auth headers, bounded retries with backoff, and typed errors that quote the server.

Secrets never leave this module in a message: header values are replaced by ``***`` in anything quoted from the
server, and URLs with credentials are refused before any request.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import httpx

from mlm_export.errors import AuthenticationError, ConfigurationError, STACAPIError
from mlm_export.stac.writer import check_href

#: Environment variable holding a bearer token sent as ``Authorization`` when no such header is given.
TOKEN_ENV = "MLM_EXPORT_STAC_TOKEN"
#: Attempts per request on connection errors and 5xx answers, and the first backoff (doubled each time).
ATTEMPTS = 4
BACKOFF_S = 0.25
_AUTH_HINT = f"Pass headers={{'Authorization': 'Bearer ...'}} (CLI: --header), or set ${TOKEN_ENV}."


def api_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """``headers`` plus ``Authorization: Bearer $MLM_EXPORT_STAC_TOKEN`` when set and not given."""
    merged = {str(k): str(v) for k, v in (headers or {}).items()}
    token = os.environ.get(TOKEN_ENV)
    if token and not any(k.lower() == "authorization" for k in merged):
        merged["Authorization"] = f"Bearer {token}"
    return merged


def check_api_url(url: Any) -> str:
    """``url`` without a trailing slash; it must be http(s) and carry no credentials.

    Raises:
        ConfigurationError: another scheme, or ``user:password@`` in the URL.
    """
    if not isinstance(url, str) or urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc:
        raise ConfigurationError(f"api_url: expected an http(s):// URL of a STAC API, got {url!r}.")
    check_href(url, "api_url")
    return url.rstrip("/")


def scrub(text: str, headers: Mapping[str, str]) -> str:
    """``text`` with every header value (and its bearer token) replaced by ``***``."""
    for value in headers.values():
        for secret in {value, value.split(" ", 1)[-1]}:
            if len(secret) >= 4:
                text = text.replace(secret, "***")
    return text


def server_message(response: httpx.Response, headers: Mapping[str, str]) -> str:
    """The server's error text (``description``/``detail`` of a JSON body, else the body), short and scrubbed."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, Mapping):
        body = body.get("description") or body.get("detail") or body.get("code") or body
    text = str(body).strip() or response.reason_phrase
    return scrub(text[:500], headers)


def api_error(response: httpx.Response, what: str, headers: Mapping[str, str], **extra: Any) -> STACAPIError:
    """A typed error for a failed ``response`` to ``what`` (e.g. "POST http://.../items for item 'x'")."""
    status = response.status_code
    message = server_message(response, headers)
    if status in (401, 403):
        refused = "refused the credentials" if any(k.lower() == "authorization" for k in headers) else "needs auth"
        return AuthenticationError(
            f"{what}: the server answered {status} ({refused}): {message}", status=status, hint=_AUTH_HINT, **extra
        )
    return STACAPIError(f"{what}: the server answered {status}: {message}", status=status, **extra)


def send(client: httpx.Client, method: str, path: str, what: str, *, json: Any = None, **extra: Any) -> httpx.Response:
    """One request, retried with exponential backoff on connection errors and 5xx answers (bounded).

    Returns:
        The response (any status below 500 is returned for the caller to judge).

    Raises:
        STACAPIError: the server stayed unreachable or kept answering 5xx; ``extra`` goes into the error.
    """
    delay = BACKOFF_S
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = client.request(method, path, json=json)
        except httpx.TransportError as exc:
            if attempt == ATTEMPTS:
                raise STACAPIError(
                    f"{what}: the STAC API at {client.base_url} cannot be reached ({type(exc).__name__}: "
                    f"{scrub(str(exc), client.headers)}) after {ATTEMPTS} attempts.",
                    hint="Check the URL and that the server runs (make stac-api starts a local one).",
                    **extra,
                ) from None
        else:
            if response.status_code < 500:
                return response
            if attempt == ATTEMPTS:
                error = api_error(response, what, client.headers, **extra)
                error.message += f" (after {ATTEMPTS} attempts)"
                raise error
        time.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover
