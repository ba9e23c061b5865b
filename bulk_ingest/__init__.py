"""Bulk Ingest: the CLI and process supervision, typed settings, the Kafka adapter, the SSRF guard,
and the stage runtime (stage runner, error classification, dead letters) the adapters share."""
