"""Record factories for tests: valid by default, with unique keys per test."""

from __future__ import annotations

import uuid
from typing import Any


def unique_prefix() -> str:
    return uuid.uuid4().hex[:8]


def customer(key: str, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "externalId": key,
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": f"{key}@example.com",
        "addresses": [
            {"type": "home", "line1": "12 St James's Sq", "city": "London", "country": "GB"}
        ],
        "importantDates": [{"type": "birthday", "date": "1815-12-10"}],
    }
    record.update(overrides)
    return record


def customers(prefix: str, count: int) -> list[dict[str, Any]]:
    return [customer(f"{prefix}-{i}") for i in range(count)]


def product(sku: str, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "sku": sku,
        "name": f"Desk {sku}",
        "price": 349.0,
        "currency": "EUR",
        "tags": ["office"],
    }
    record.update(overrides)
    return record
