"""The API's description: ``GET /api/v1/openapi.json`` (OpenAPI 3.1, :mod:`domain.openapi`) and
``GET /docs``, Swagger UI rendering it, with its assets under ``/docs/assets/``.

All three are public, like ``/healthz``. The document is built once, when the gateway starts
(from its entity registry and its settings' limits), and served as the same bytes every time.
The page's assets come from the ``swagger-ui-py`` package, served from this gateway; nothing is
loaded from anywhere else (the Content-Security-Policy allows this origin only, and the page
turns off Swagger UI's online validator). An API key typed into "Authorize" stays in the page.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from aiohttp import web

from api.errors import problem
from api.page_headers import content_security_policy, security_headers
from api.services import SERVICES
from bulk_ingest.settings import Settings
from domain.errors import ErrorCode
from domain.job_view import API_PREFIX
from domain.openapi import openapi_document
from domain.openapi_schemas import Limits

OPENAPI_PATH = API_PREFIX + "/openapi.json"
DOCS_PATH = "/docs"
ASSETS_PATH = DOCS_PATH + "/assets"
OPENAPI = web.AppKey("openapi", bytes)
SCRIPT_NAME = "docs.js"
"""The page's own script (Swagger UI started on this document), served beside the others."""

# Swagger UI (React) sets style attributes.
CONTENT_SECURITY_POLICY = content_security_policy(inline_styles=True)
SECURITY_HEADERS = security_headers(CONTENT_SECURITY_POLICY)

PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Bulk Ingest API</title>
  <link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{ASSETS_PATH}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
  <script src="{ASSETS_PATH}/{SCRIPT_NAME}"></script>
</body>
</html>
"""

SCRIPT = f"""window.ui = SwaggerUIBundle({{
  url: "{OPENAPI_PATH}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  layout: "BaseLayout",
  presets: [SwaggerUIBundle.presets.apis],
  validatorUrl: null,
  persistAuthorization: false,
  displayRequestDuration: true
}});
"""

SWAGGER_UI_FILES: Mapping[str, str] = MappingProxyType(
    {
        "swagger-ui.css": "text/css; charset=utf-8",
        "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
        "favicon-32x32.png": "image/png",
    }
)
"""The files of the Swagger UI distribution the page uses, with their content types."""


def swagger_ui_dir() -> Path:
    """The distribution's folder inside the installed ``swagger_ui`` package (not imported: only
    its files are used)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise RuntimeError("the swagger-ui-py package is not installed (pyproject.toml has it)")
    return Path(spec.origin).parent / "static"


def limits_of(settings: Settings) -> Limits:
    return Limits(
        max_async_records=settings.max_async_records,
        max_sync_records=settings.max_sync_records,
        sync_timeout_seconds=settings.sync_timeout_seconds,
        max_body_bytes=settings.max_body_bytes,
        max_file_bytes=settings.max_file_bytes,
    )


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


async def docs_page(request: web.Request) -> web.Response:
    return web.Response(
        text=PAGE, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS
    )


def _asset_handler(folder: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == SCRIPT_NAME:
            return web.Response(
                text=SCRIPT,
                content_type="text/javascript",
                charset="utf-8",
                headers=SECURITY_HEADERS,
            )
        content_type = SWAGGER_UI_FILES.get(name)
        if content_type is None:
            raise problem(404, ErrorCode.NotFound, f"There is nothing at {request.path}.")
        return web.FileResponse(
            folder / name,
            headers={
                **SECURITY_HEADERS,
                "Content-Type": content_type,
                "Cache-Control": "public, max-age=86400",
            },
        )

    return asset


async def openapi_ctx(app: web.Application) -> AsyncIterator[None]:
    """The document, built once the registry is loaded (off the event loop: computing the key
    format's character class takes a moment)."""
    registry = app[SERVICES].registry
    limits = limits_of(app[SERVICES].settings)
    document = await asyncio.to_thread(openapi_document, registry, limits)
    app[OPENAPI] = json.dumps(document, ensure_ascii=False).encode()
    yield


def add_routes(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, openapi)
    app.router.add_get(DOCS_PATH, docs_page)
    app.router.add_get(ASSETS_PATH + "/{name}", _asset_handler(swagger_ui_dir()))
    app.cleanup_ctx.append(openapi_ctx)
