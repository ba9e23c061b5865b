"""Scrape a process's Prometheus metrics, as a Prometheus server would."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample at ``url`` by (name, sorted labels); fails when nothing answers there."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def records_counted(samples: Samples, outcome: str, entity: str = "customers") -> float:
    key = ("bulk_ingest_records_total", (("entity", entity), ("outcome", outcome)))
    return samples.get(key, 0.0)


def worker_url(settings, worker: str) -> str:  # type: ignore[no-untyped-def]
    from bulk_ingest.metrics import worker_port

    return f"http://127.0.0.1:{worker_port(settings.metrics_port, worker)}/metrics"
