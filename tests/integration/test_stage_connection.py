"""A stage's connection is replaced when it is left in a state no retry gets it out of."""

from __future__ import annotations

import asyncio

from storage.connection import StageConnection


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
