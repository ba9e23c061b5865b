"""Storage adapter: PostgreSQL tables, Alembic migrations and the queries the services share.

``storage/jobs.py`` alone reads and writes the ``jobs`` table; the other modules own their tables.
"""
