"""The test databases: dropped and created empty for each session (or module) that owns one."""

from __future__ import annotations

import psycopg
from psycopg import sql

from bulk_ingest.settings import Settings


def recreate_database(settings: Settings) -> None:
    admin_url = settings.libpq_url.rsplit("/", 1)[0] + "/postgres"
    database = settings.libpq_url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            # Client sessions only: an autovacuum worker (which we may not terminate) is
            # stopped by DROP DATABASE itself.
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            [database],
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
