"""Scrape a process's Prometheus metrics, as a Prometheus server would."""

from __future__ import annotations

import threading
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


class CounterWatch:
    """Scrapes some processes every ``interval`` s from a thread and sums, per process
    incarnation (told apart by ``process_start_time_seconds``), how far a counter moved: a
    process the supervisor restarts starts its counters from zero, and what it had counted
    before is taken from its last scrape."""

    def __init__(self, urls: list[str], key: tuple[str, tuple[tuple[str, str], ...]]) -> None:
        self._urls, self._key = urls, key
        self._seen: dict[tuple[str, float], tuple[float, float]] = {}  # first, last
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="counter-watch")

    def __enter__(self) -> CounterWatch:
        for url in self._urls:
            self.observe(url, strict=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for url in self._urls:
            self.observe(url, strict=True)

    def moved(self) -> float:
        with self._lock:
            return sum(last - first for first, last in self._seen.values())

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for url in self._urls:
                self.observe(url, strict=False)

    def observe(self, url: str, *, strict: bool = True) -> None:
        """Scrape ``url`` now (``strict``: it must answer)."""
        try:
            samples = scrape(url)
        except OSError:
            if strict:
                raise
            return  # restarting: the next scrape finds the new incarnation
        started = samples.get(("process_start_time_seconds", ()), 0.0)
        value = samples.get(self._key, 0.0)
        with self._lock:
            first, _ = self._seen.get((url, started), (None, value))
            if first is None:
                first = value if not self._seen_any(url) else 0.0
            self._seen[(url, started)] = (first, value)

    def _seen_any(self, url: str) -> bool:
        return any(seen_url == url for seen_url, _ in self._seen)
