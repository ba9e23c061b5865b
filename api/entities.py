"""``GET /entities`` and ``GET /entities/{entity}``: the entities and the field paths they take
(:mod:`domain.entity_description`), for clients building records or import mappings."""

from __future__ import annotations

from aiohttp import web

from api.auth import authenticate
from api.errors import problem
from api.services import SERVICES
from domain.entity_description import entity_description, entity_list
from domain.errors import ErrorCode
from domain.job_view import API_PREFIX


async def list_entities(request: web.Request) -> web.Response:
    await authenticate(request)
    return web.json_response(entity_list(request.app[SERVICES].registry))


async def describe_entity(request: web.Request) -> web.Response:
    await authenticate(request)
    registry = request.app[SERVICES].registry
    name = request.match_info["entity"]
    if name not in registry:
        raise problem(
            404,
            ErrorCode.UnknownEntity,
            f"Entity {name!r} does not exist; the entities are {', '.join(registry.names())}.",
        )
    return web.json_response(entity_description(registry.get(name)))


def add_routes(app: web.Application) -> None:
    app.router.add_get(API_PREFIX + "/entities", list_entities)
    app.router.add_get(API_PREFIX + "/entities/{entity}", describe_entity)
