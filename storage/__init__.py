"""Storage adapter: SQLAlchemy tables, Alembic migrations and the queries the services share."""
