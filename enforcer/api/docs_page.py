"""`/docs`: the API reference, served by this server alone (no CDN).

FastAPI's own `/docs` and `/redoc` pages load their scripts and styles from a public CDN: an
admin's browser would fetch code from a third party to show the page, and a server without
internet access shows a blank one. Here, Swagger UI is served from the ``swagger-ui-bundle``
package when it is installed (its assets under ``/docs/assets``); otherwise `/docs` is a plain
reference page made from the OpenAPI document, which says how to get the interactive one.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"
METHODS = ("get", "put", "post", "delete", "patch")


def swagger_ui_dir() -> Path | None:
    """The directory of Swagger UI's assets from the installed ``swagger-ui-bundle``, if any."""
    try:
        import swagger_ui_bundle  # type: ignore[import-not-found]
    except ImportError:
        return None
    found = getattr(swagger_ui_bundle, "swagger_ui_path", None)
    path = Path(found) if found else None
    return path if path is not None and (path / "swagger-ui-bundle.js").is_file() else None


def install(app: FastAPI, assets: Path | None = None) -> None:
    """Serve `/docs` from this server: Swagger UI from `assets` (default: `swagger_ui_dir`),
    or the plain reference page when there are none. The app must be created with
    ``docs_url=None, redoc_url=None``."""
    assets = assets if assets is not None else swagger_ui_dir()
    if assets is not None:
        app.mount(ASSETS, StaticFiles(directory=assets), name="docs-assets")

        @app.get("/docs", include_in_schema=False)
        def swagger_ui() -> HTMLResponse:
            return get_swagger_ui_html(
                openapi_url=app.openapi_url or "/openapi.json",
                title=f"{app.title} reference",
                swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            )

        return

    @app.get("/docs", include_in_schema=False)
    def reference() -> HTMLResponse:
        return HTMLResponse(reference_page(app.openapi(), app.openapi_url or "/openapi.json"))


def reference_page(spec: dict[str, Any], openapi_url: str) -> str:
    """A self-contained HTML page listing every operation of `spec` (no script, no asset)."""
    e = html.escape
    info = spec.get("info", {})
    rows: list[str] = []
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{e(path)}</code></td>"
                f"<td>{e(op.get('summary', ''))}</td>"
                f"<td>{e(', '.join(op.get('tags', [])))}</td></tr>"
            )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{e(info.get('title', 'API'))} reference</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em .8em;"
        "text-align:left;border-bottom:1px solid #ddd}</style></head><body>"
        f"<h1>{e(info.get('title', 'API'))} {e(str(info.get('version', '')))}</h1>"
        f"<p>{e(info.get('description', ''))}</p>"
        "<p><strong>This is a plain reference page:</strong> the interactive Swagger UI is "
        "served only from this server, and its assets are not installed here "
        "(<code>pip install swagger-ui-bundle</code> adds them). The whole contract is the "
        f'OpenAPI document at <a href="{e(openapi_url)}">{e(openapi_url)}</a>.</p>'
        "<table><tr><th>Method</th><th>Path</th><th>Summary</th><th>Tag</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
