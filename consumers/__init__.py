"""The completion side, run by ``bulk-ingest consumers``: report writer, webhook dispatcher."""
