"""``bulk-ingest template ENTITY``: download an entity's import template and save it.

Works against any gateway (``--url``, ``--api-key``, or ``BULK_INGEST_URL`` /
``BULK_INGEST_API_KEY``; :mod:`bulk_ingest.gateway_client`). The file goes to ``--output`` or
to ``<entity>-template.<format>`` in the current folder; its path is printed on stdout.

Exit status: 0 saved; 2 the request was refused, the gateway unreachable or the file not
writable.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from bulk_ingest.gateway_client import ClientError, add_gateway_arguments, gateway_from, refusal

FORMATS = ("csv", "xlsx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("entity", help="customers, products, ...")
    parser.add_argument("--format", choices=FORMATS, default=FORMATS[0], dest="form")
    parser.add_argument(
        "--output", type=Path, help="where to save it (default: ./ENTITY-template.FORMAT)"
    )
    add_gateway_arguments(parser)


def run_template(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        target = save_template(args, os.environ if environ is None else environ)
    except ClientError as exc:
        err.write(f"bulk-ingest template: {exc}\n")
        return 2
    out.write(f"{target}\n")
    return 0


def save_template(args: argparse.Namespace, environ: Mapping[str, str]) -> Path:
    gateway = gateway_from(args, environ)
    entity = urllib.parse.quote(args.entity, safe="")
    path = f"/api/v1/entities/{entity}/template?format={args.form}"
    status, _, body = gateway.request("GET", path)
    if status != 200:
        raise ClientError(refusal("GET", path, status, body))
    target: Path = args.output or Path.cwd() / f"{args.entity}-template.{args.form}"
    try:
        target.write_bytes(body)
    except OSError as exc:
        raise ClientError(f"cannot save the template to {target}: {exc}") from exc
    return target
