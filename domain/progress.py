"""How fast a job moves: records per second over the last few seconds, and the time to go.

One :class:`ProgressMeter` per job, fed with ``(time, processed)`` samples by whoever watches
it (the gateway's live view, the CLI, the benchmarks). Before it has two samples, the rate is
the job's average since it started.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

RATE_WINDOW_SECONDS = 5.0


@dataclass
class ProgressMeter:
    """Rate over the last ``window`` seconds, ETA from it; fed with (time, processed) samples."""

    window: float = RATE_WINDOW_SECONDS
    _samples: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, now: float, processed: int) -> None:
        if self._samples and processed < self._samples[-1][1]:
            self._samples.clear()  # counts never go back; a new start is a new meter
        self._samples.append((now, processed))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window:
            self._samples.popleft()

    @property
    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, p0), (t1, p1) = self._samples[0], self._samples[-1]
        return (p1 - p0) / (t1 - t0) if t1 > t0 else 0.0

    def rate_or_average(self, processed: int, running_seconds: float | None) -> float:
        """The windowed rate, or ``processed / running_seconds`` while it has no window yet."""
        rate = self.rate
        if rate > 0 or running_seconds is None or running_seconds <= 0:
            return rate
        return processed / running_seconds

    def eta(self, total: int, processed: int) -> float | None:
        return eta_seconds(total, processed, self.rate)


def eta_seconds(total: int, processed: int, rate: float) -> float | None:
    """Seconds to go at ``rate``; None while the total or the rate is unknown."""
    if total <= 0 or rate <= 0:
        return None
    return max(total - processed, 0) / rate
