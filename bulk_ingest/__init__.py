"""Bulk Ingest: process entry points (CLI), settings and the shared Kafka adapter."""
