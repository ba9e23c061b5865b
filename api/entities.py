"""``GET /entities``, ``GET /entities/{entity}`` and ``GET /entities/{entity}/template``: the
entities, the field paths they take (:mod:`domain.entity_description`), and an import template
of each (:mod:`domain.entity_template`), for clients building records, mappings or files."""

from __future__ import annotations

import asyncio

from aiohttp import web

from api.auth import authenticate
from api.errors import problem
from api.services import SERVICES
from domain.entities import EntityDefinition
from domain.entity_description import entity_description, entity_list
from domain.entity_template import (
    MEDIA_TYPES,
    TEMPLATE_FORMATS,
    template_file,
    template_filename,
)
from domain.errors import ErrorCode
from domain.job_view import API_PREFIX


async def list_entities(request: web.Request) -> web.Response:
    await authenticate(request)
    return web.json_response(entity_list(request.app[SERVICES].registry))


async def describe_entity(request: web.Request) -> web.Response:
    await authenticate(request)
    return web.json_response(entity_description(_definition(request)))


async def entity_template(request: web.Request) -> web.Response:
    await authenticate(request)
    definition = _definition(request)
    form = request.query.get("format", TEMPLATE_FORMATS[0])
    if form not in TEMPLATE_FORMATS:
        raise problem(422, ErrorCode.InvalidParameter, "format must be csv (the default) or xlsx.")
    body = await asyncio.to_thread(template_file, definition, form)  # XLSX: ~10 ms of CPU
    return web.Response(
        body=body,
        headers={
            "Content-Type": MEDIA_TYPES[form] + ("; charset=utf-8" if form == "csv" else ""),
            "Content-Disposition": (
                f'attachment; filename="{template_filename(definition.name, form)}"'
            ),
        },
    )


def _definition(request: web.Request) -> EntityDefinition:
    registry = request.app[SERVICES].registry
    name = request.match_info["entity"]
    if name not in registry:
        raise problem(
            404,
            ErrorCode.UnknownEntity,
            f"Entity {name!r} does not exist; the entities are {', '.join(registry.names())}.",
        )
    return registry.get(name)


def add_routes(app: web.Application) -> None:
    app.router.add_get(API_PREFIX + "/entities", list_entities)
    app.router.add_get(API_PREFIX + "/entities/{entity}", describe_entity)
    app.router.add_get(API_PREFIX + "/entities/{entity}/template", entity_template)
