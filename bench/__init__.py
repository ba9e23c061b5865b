"""Benchmarks, each beside a PostgreSQL COPY baseline measured in the same run."""
