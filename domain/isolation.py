"""Finding the few items of a batch that make it fail, by splitting it (pure).

Used where one bad record must not sink its batch: the persist stage probes halves of a batch
against the database until each offending record stands alone. For ``n`` items of which ``k``
are bad, about ``2k·log2(n)`` probes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


async def failing_items(
    items: Sequence[T], passes: Callable[[Sequence[T]], Awaitable[bool]]
) -> list[T]:
    """The items that fail ``passes`` on their own, found by halving; [] if the whole passes."""
    if not items or await passes(items):
        return []
    if len(items) == 1:
        return [items[0]]
    middle = len(items) // 2
    return [
        *await failing_items(items[:middle], passes),
        *await failing_items(items[middle:], passes),
    ]
