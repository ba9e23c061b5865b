"""Job options (design.md §8), pure: what a request may ask for, what a default does to a
record, when the breaker trips, and that a chunk's options must be its job's."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from domain.chunks import InvalidChunk, JobIdentity, job_mismatch, parse_chunk
from domain.entities import EntityRegistry, default_schemas_dir
from domain.errors import InvalidInput
from domain.import_mapping import plan_columns
from domain.job_options import (
    NO_OPTIONS,
    JobOptions,
    error_rate_exceeded,
    error_rate_reason,
    options_from_message,
    parse_job_options,
    with_defaults,
)

REGISTRY = EntityRegistry.load(default_schemas_dir())
CUSTOMERS = REGISTRY.get("customers")


def options(**body: Any) -> JobOptions:
    return parse_job_options(CUSTOMERS, body)


def refused(**body: Any) -> list[tuple[str, str | None]]:
    with pytest.raises(InvalidInput) as caught:
        parse_job_options(CUSTOMERS, body)
    return [(e.error_code.value, e.field) for e in caught.value.errors]


def test_no_options_mean_the_behaviour_every_job_had() -> None:
    assert options() == NO_OPTIONS
    assert (NO_OPTIONS.dry_run, NO_OPTIONS.outcome_events, NO_OPTIONS.max_error_rate) == (
        False,
        True,
        None,
    )
    assert options(dry_run=None, outcome_events=None, defaults=None) == NO_OPTIONS


def test_every_option_is_taken() -> None:
    taken = options(
        dry_run=True,
        outcome_events=False,
        max_error_rate=0.1,
        min_records=50,
        defaults={"company": "ACME", "addresses.0.type": "home"},
    )
    assert (taken.dry_run, taken.outcome_events, taken.max_error_rate, taken.min_records) == (
        True,
        False,
        0.1,
        50,
    )
    assert taken.defaults_json() == {"company": "ACME", "addresses.0.type": "home"}
    assert options(max_error_rate=0).min_records == 1000  # the default of §8
    assert options(max_error_rate=0.5, min_records=250.0).min_records == 250


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"dry_run": "yes"}, [("InvalidFieldType", "dry_run")]),
        ({"outcome_events": 0}, [("InvalidFieldType", "outcome_events")]),
        ({"max_error_rate": 1}, [("InvalidValue", "max_error_rate")]),
        ({"max_error_rate": -0.1}, [("InvalidValue", "max_error_rate")]),
        ({"max_error_rate": True}, [("InvalidFieldType", "max_error_rate")]),
        ({"max_error_rate": 0.5, "min_records": 0}, [("InvalidValue", "min_records")]),
        ({"max_error_rate": 0.5, "min_records": 1.5}, [("InvalidFieldType", "min_records")]),
        ({"min_records": 10}, [("InvalidValue", "min_records")]),
        ({"defaults": []}, [("InvalidFieldType", "defaults")]),
        ({"defaults": {"email": "not-an-email"}}, [("InvalidFormat", "defaults.email")]),
        ({"defaults": {"nickname": "x"}}, [("UnknownField", "defaults.nickname")]),
        ({"defaults": {"addresses": "x"}}, [("InvalidFieldType", "defaults.addresses")]),
        ({"defaults": {"company": None}}, [("InvalidFieldType", "defaults.company")]),
        (
            {"defaults": {"addresses.10.city": "Paris"}},
            [("UnknownField", "defaults.addresses.10.city")],
        ),
        (
            {"defaults": {"addresses.00.city": "x"}},
            [("UnknownField", "defaults.addresses.00.city")],
        ),
        (
            {"defaults": {"addresses.0.country": "France"}},
            [("InvalidFormat", "defaults.addresses.0.country")],
        ),
        ({"defaults": {"firstName": 7}}, [("InvalidFieldType", "defaults.firstName")]),
        ({"defaults": {"externalId": "k"}}, [("InvalidValue", "defaults.externalId")]),
    ],
)
def test_a_bad_option_is_refused_with_its_member_named(
    body: dict[str, Any], expected: list[tuple[str, str | None]]
) -> None:
    assert refused(**body) == expected


def test_every_bad_option_is_reported_at_once() -> None:
    assert refused(dry_run=1, max_error_rate=2, defaults={"email": 3}) == [
        ("InvalidFieldType", "dry_run"),
        ("InvalidValue", "max_error_rate"),
        ("InvalidFieldType", "defaults.email"),
    ]


def test_a_default_fills_absent_and_null_fields_only() -> None:
    defaults = options(defaults={"company": "ACME", "phone": "+44 20 7946 0000"}).defaults
    record = {"externalId": "c-1", "company": None, "phone": "+1 555"}
    assert with_defaults(record, defaults) == {
        "externalId": "c-1",
        "company": "ACME",
        "phone": "+1 555",
    }
    assert record == {"externalId": "c-1", "company": None, "phone": "+1 555"}  # not modified


def test_a_default_never_creates_a_container() -> None:
    defaults = options(defaults={"addresses.0.type": "home", "addresses.1.type": "work"}).defaults
    assert with_defaults({"externalId": "c"}, defaults) == {"externalId": "c"}
    assert with_defaults({"addresses": None}, defaults) == {"addresses": None}
    one = {"addresses": [{"line1": "1 Rue", "type": None}]}
    assert with_defaults(one, defaults) == {"addresses": [{"line1": "1 Rue", "type": "home"}]}
    typed = {"addresses": [{"type": "billing"}, {"line1": "2 Rue"}]}
    assert with_defaults(typed, defaults) == {
        "addresses": [{"type": "billing"}, {"line1": "2 Rue", "type": "work"}]
    }
    assert with_defaults("not a record", defaults) == "not a record"


def test_an_import_may_leave_a_required_field_to_its_default() -> None:
    header = ["externalId", "firstName", "lastName", "Street", "City", "Country"]
    mappings = {
        "Street": "addresses.0.line1",
        "City": "addresses.0.city",
        "Country": "addresses.0.country",
    }
    with pytest.raises(InvalidInput) as caught:
        plan_columns(CUSTOMERS, header, mappings)
    assert [e.field for e in caught.value.errors] == ["addresses.0.type"]
    filled = options(defaults={"addresses.0.type": "home"}).default_targets
    assert plan_columns(CUSTOMERS, header, mappings, filled).targets[-1] == "addresses.0.country"


def test_the_breaker_trips_above_the_rate_once_min_records_are_processed() -> None:
    breaker = options(max_error_rate=0.1, min_records=100)
    assert not error_rate_exceeded(breaker, 99, 99)  # too few yet
    assert not error_rate_exceeded(breaker, 100, 10)  # at the rate, not above
    assert error_rate_exceeded(breaker, 100, 11)
    assert not error_rate_exceeded(NO_OPTIONS, 10_000, 10_000)  # no breaker
    assert error_rate_exceeded(options(max_error_rate=0, min_records=1), 1, 1)
    reason = error_rate_reason(breaker, 200, 50)
    assert "50 of the first 200 records failed (25.0%)" in reason
    assert "max_error_rate 0.1" in reason and "min_records 100" in reason


def test_options_travel_on_a_chunk_and_are_checked_like_a_request() -> None:
    message = {
        "dry_run": True,
        "defaults": [{"path": "company", "value": "ACME"}],
        "max_error_rate": 0.25,
        "min_records": 10,
        "outcome_events": False,
    }
    carried = options_from_message(CUSTOMERS, message)
    assert carried == options(
        dry_run=True,
        defaults={"company": "ACME"},
        max_error_rate=0.25,
        min_records=10,
        outcome_events=False,
    )
    assert options_from_message(CUSTOMERS, {}) == NO_OPTIONS  # a v1 chunk
    with pytest.raises(InvalidInput):
        options_from_message(CUSTOMERS, {"max_error_rate": 3.0})


def chunk(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job_id": str(uuid.uuid4()),
        "tenant_id": str(uuid.uuid4()),
        "entity": "customers",
        "operation": "insert",
        "chunk_index": 0,
        "chunk_count": 1,
        "total": 1,
        "first_index": 0,
        "records": [{"externalId": "a"}],
    }
    body.update(changes)
    return body


def test_a_chunk_with_bad_options_is_refused_and_one_unlike_its_job_mismatches() -> None:
    with pytest.raises(InvalidChunk) as caught:
        parse_chunk(chunk(defaults=[{"path": "nickname", "value": "x"}]), REGISTRY, 10)
    assert caught.value.reason == "invalid-chunk" and "nickname" in caught.value.detail
    parsed = parse_chunk(chunk(dry_run=True), REGISTRY, 10)
    same = JobIdentity(parsed.tenant_id, "customers", "insert", 1, "kafka", parsed.options)
    assert job_mismatch(parsed, same) is None
    real_run = JobIdentity(parsed.tenant_id, "customers", "insert", 1, "kafka", NO_OPTIONS)
    assert job_mismatch(parsed, real_run) == (
        f"job {parsed.job_id} has other job options than this chunk"
    )


def test_the_order_of_defaults_does_not_make_other_options() -> None:
    one = options(defaults={"company": "A", "phone": "1"})
    other = options(defaults={"phone": "1", "company": "A"})
    assert one.identity() == other.identity()
    assert one.identity() != options(defaults={"company": "B", "phone": "1"}).identity()
