"""The dashboard: ``GET /`` serves the web page and ``GET /assets/{name}`` its files from
``api/web/`` — plain ES modules and one style sheet, nothing fetched from anywhere else.

Both are public: the page holds no tenant data until the user types an API key, which the page
keeps in the tab's ``sessionStorage`` and sends as a Bearer header to ``/api/v1`` (never in a
URL). Every answer carries a Content-Security-Policy that allows only this origin, so the page
can neither load nor send anything elsewhere. The asset table is built once, when the routes are
added, from the files that are there: a name outside it is a 404, whatever it contains.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from aiohttp import web

from api.errors import problem
from api.page_headers import content_security_policy, security_headers
from domain.errors import ErrorCode

WEB_DIR = Path(__file__).resolve().parent / "web"
INDEX = "index.html"

CONTENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".svg": "image/svg+xml",
    }
)

CONTENT_SECURITY_POLICY = content_security_policy()
# Revalidated on every load (a 304 when unchanged): a new release is never half-cached.
SECURITY_HEADERS = security_headers(CONTENT_SECURITY_POLICY, cache_control="no-cache")


@dataclass(frozen=True)
class Asset:
    path: Path
    content_type: str


def web_assets(web_dir: Path = WEB_DIR) -> dict[str, Asset]:
    """Every servable file of ``web_dir`` by name (no sub-folders, known types only)."""
    return {
        path.name: Asset(path, CONTENT_TYPES[path.suffix])
        for path in sorted(web_dir.iterdir())
        if path.is_file() and path.suffix in CONTENT_TYPES and path.name != INDEX
    }


def _file(asset: Asset) -> web.FileResponse:
    return web.FileResponse(
        asset.path, headers={**SECURITY_HEADERS, "Content-Type": asset.content_type}
    )


def add_routes(app: web.Application, web_dir: Path = WEB_DIR) -> None:
    index = Asset(web_dir / INDEX, CONTENT_TYPES[".html"])
    assets = web_assets(web_dir)

    async def dashboard(request: web.Request) -> web.FileResponse:
        return _file(index)

    async def asset(request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        found = assets.get(name)
        if found is None:
            raise problem(404, ErrorCode.NotFound, f"The dashboard has no file {name!r}.")
        return _file(found)

    app.router.add_get("/", dashboard)
    app.router.add_get("/assets/{name}", asset)
