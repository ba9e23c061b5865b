"""A stage's connection is replaced when it is left in a state no retry gets it out of."""

from __future__ import annotations

import asyncio

import psycopg

from domain.entities import EntityRegistry, default_schemas_dir
from storage.connection import StageConnection
from storage.entity_rows import EntityTableMap


def test_a_connection_left_in_pipeline_mode_is_replaced_not_retried_for_ever(settings) -> None:
    """Seen in a full run: PostgreSQL shut down while the validate stage's chunk admission was
    in a pipeline; every retry then failed with "cannot exit pipeline mode while busy" on the
    same connection, and the job never finished."""

    async def run() -> None:
        stage = StageConnection(settings.libpq_url, autocommit=True)
        try:
            stranded = await stage.get()
            stranded.pgconn.enter_pipeline_mode()  # where the shutdown left it
            fresh = await stage.get()
            assert fresh is not stranded and stranded.closed
            cursor = await fresh.execute("SELECT 1")
            assert await cursor.fetchone() == (1,)
            assert await stage.get() is fresh  # a healthy connection is kept
        finally:
            await stage.close()

    asyncio.run(run())


TENANT = "00000000-0000-0000-0000-00000000000a"
CUSTOMERS = EntityTableMap.of(EntityRegistry.load(default_schemas_dir()).get("customers"))


async def lookup_plan_after_the_tenant_grew(conn, unique: str) -> str:
    """The plan of the persist stage's lookup of existing rows, prepared and run while the
    tenant had no rows, then explained after it got 50,000 — a tenant's first big job — on a
    scratch copy of the customers table whose uniqueness is ``unique``."""
    await conn.execute(
        f"CREATE TEMP TABLE looked_up (LIKE customers INCLUDING DEFAULTS, UNIQUE ({unique}))"
    )
    await conn.execute(
        "INSERT INTO looked_up (id, tenant_id, external_id, first_name, last_name) "
        "SELECT gen_random_uuid(), gen_random_uuid(), 'k' || i, 'F', 'L' "
        "FROM generate_series(1, 200) i"
    )
    await conn.execute("ANALYZE looked_up")
    statement = CUSTOMERS.rows_of_keys("looked_up").as_string(conn)
    statement = statement.replace("%s", "$1", 1).replace("%s", "$2", 1)
    await conn.execute(f"PREPARE lookup(uuid, text[]) AS {statement}")
    for _ in range(8):  # past the five runs after which PostgreSQL may keep a generic plan
        await conn.execute(f"EXECUTE lookup('{TENANT}', ARRAY['k1', 'k2'])")
    await conn.execute(
        "INSERT INTO looked_up (id, tenant_id, external_id, first_name, last_name) "
        f"SELECT gen_random_uuid(), '{TENANT}', 'k' || i, 'F', 'L' "
        "FROM generate_series(1, 50000) i"
    )
    cursor = await conn.execute(f"EXPLAIN EXECUTE lookup('{TENANT}', ARRAY['k1', 'k2'])")
    return "\n".join(row[0] for row in await cursor.fetchall())


def test_the_lookup_of_existing_rows_reads_only_the_keys_it_asks_for_in_a_big_first_job(
    settings,
) -> None:
    """Measured before: PostgreSQL at 412 µs per record instead of 39 in a 50,000-record upsert,
    every batch reading all the rows the job had written so far. With the tenant leading the
    index, or a cached generic plan, the keys are a filter; on a stage connection, with the
    key leading the index (migration 0006), they are the index condition."""

    async def run() -> tuple[str, str]:
        plain = await psycopg.AsyncConnection.connect(settings.libpq_url, autocommit=True)
        stage = StageConnection(settings.libpq_url, autocommit=True)
        try:
            trap = await lookup_plan_after_the_tenant_grew(plain, "tenant_id, external_id")
            ours = await lookup_plan_after_the_tenant_grew(
                await stage.get(), "external_id, tenant_id"
            )
            return trap, ours
        finally:
            await plain.close()
            await stage.close()

    trap, ours = asyncio.run(run())
    filters = [line for line in trap.splitlines() if "Filter:" in line]
    assert filters and "external_id = ANY" in filters[0], trap  # the trap is real here
    conditions = [line for line in ours.splitlines() if "Index Cond:" in line]
    assert conditions and "external_id = ANY" in conditions[0], ours
    assert "Filter" not in ours, ours


def test_a_stage_connection_plans_every_statement_for_its_parameters(settings) -> None:
    async def run() -> list[str]:
        stage = StageConnection(settings.libpq_url)  # not autocommit: the setting still holds
        try:
            modes = []
            for _ in range(2):
                conn = await stage.get()
                cursor = await conn.execute("SHOW plan_cache_mode")
                modes.append((await cursor.fetchone())[0])
                await conn.rollback()
                await stage.discard()  # and again on the next connection
            return modes
        finally:
            await stage.close()

    assert asyncio.run(run()) == ["force_custom_plan", "force_custom_plan"]
