"""``mlm-export form``: a local, no-code page that measures a model and asks only what no measurement can know.

``app.py`` (the web application and its guard: loopback ``Host``, session token), ``session.py`` (one session's
temporary directory, upload and library calls), ``fields.py`` (form values -> ``export_item``'s arguments; problems
-> form fields), ``server.py`` (uvicorn on 127.0.0.1), ``templates/`` and ``static/`` (the page: hand-written HTML,
JavaScript and CSS shipped as package data, nothing loaded from the internet). Needs the ``form`` extra (FastAPI,
uvicorn); importing :mod:`mlm_export` never imports it.
"""

from __future__ import annotations

__all__ = ["FormServer"]


def __getattr__(name: str) -> object:
    if name == "FormServer":
        from mlm_export.form.server import FormServer

        return FormServer
    raise AttributeError(name)
