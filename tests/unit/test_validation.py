"""Basic and semantic validation, as a client of the bulk API experiences it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from domain.bulk_requests import BulkRequest, Operation, invalid_json_error, validate_bulk_request
from domain.entities import DEFAULT_REFERENCE_TYPES, EntityRegistry, default_schemas_dir
from domain.errors import ApiError, ErrorCode, InvalidInput
from domain.job_options import NO_OPTIONS
from domain.semantics import semantic_error
from domain.validation import basic_record_errors, record_basic_failure

REGISTRY = EntityRegistry.load(default_schemas_dir())
CUSTOMERS = REGISTRY.get("customers")
PRODUCTS = REGISTRY.get("products")


def customer(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "externalId": "c-1",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": "ada@example.com",
        "addresses": [
            {"type": "home", "line1": "1 Main St", "city": "Springfield", "country": "US"}
        ],
        "importantDates": [{"type": "birthday", "date": "1815-12-10"}],
    }
    record.update(changes)
    return record


def product(**changes: Any) -> dict[str, Any]:
    return {"sku": "p-1", "name": "Pen", "price": 1.5, "currency": "EUR", **changes}


def validate(body: object, entity: str = "customers", max_records: int = 1000) -> BulkRequest:
    return validate_bulk_request(
        REGISTRY,
        entity,
        body,
        max_records=max_records,
        default_operation=Operation.INSERT,
        too_many_hint="use /bulk/async",
    )


def errors_of(body: object, entity: str = "customers", max_records: int = 1000) -> list[ApiError]:
    with pytest.raises(InvalidInput) as caught:
        validate(body, entity, max_records)
    return list(caught.value.errors)


def only_error(record: object, definition: Any = CUSTOMERS, index: int = 0) -> ApiError:
    errors = basic_record_errors(definition, record, index)
    assert len(errors) == 1, errors
    return errors[0]


# --- a valid request -----------------------------------------------------------------------------


def test_valid_request_is_accepted_with_defaults() -> None:
    bulk = validate({"records": [customer(), customer(externalId="c-2")]})
    assert bulk == BulkRequest(
        "customers", Operation.INSERT, (customer(), customer(externalId="c-2")), None, NO_OPTIONS
    )


def test_operation_and_webhook_are_taken_from_the_body() -> None:
    bulk = validate(
        {"records": [customer()], "operation": "upsert", "webhook_url": "https://hooks.test/x"}
    )
    assert bulk.operation is Operation.UPSERT
    assert bulk.webhook_url == "https://hooks.test/x"


@pytest.mark.parametrize("operation", ["update", "upsert"])
def test_required_fields_apply_to_every_operation(operation: str) -> None:
    (error,) = errors_of({"records": [customer(firstName=None)], "operation": operation})
    assert error.error_code is ErrorCode.MissingRequiredField


# --- request-level errors ------------------------------------------------------------------------


@pytest.mark.parametrize("body", [{"records": []}, {}, {"records": None}])
def test_no_records_is_an_empty_request(body: object) -> None:
    (error,) = errors_of(body)
    assert error.error_code is ErrorCode.EmptyRequest
    assert error.field == "records"


def test_records_must_be_an_array() -> None:
    (error,) = errors_of({"records": {"externalId": "c-1"}})
    assert (error.error_code, error.field) == (ErrorCode.InvalidFieldType, "records")


def test_body_must_be_an_object() -> None:
    (error,) = errors_of([customer()])
    assert error.error_code is ErrorCode.InvalidFieldType


def test_too_many_records_names_the_limit_and_the_way_out() -> None:
    (error,) = errors_of({"records": [customer()] * 1001})
    assert error.error_code is ErrorCode.MaxRecordsExceeded
    assert "1000" in error.message
    assert "use /bulk/async" in error.message


def test_unknown_entity() -> None:
    (error,) = errors_of({"records": [customer()]}, entity="suppliers")
    assert error.error_code is ErrorCode.UnknownEntity
    assert "customers, products" in error.message


def test_unknown_body_field() -> None:
    (error,) = errors_of({"records": [customer()], "webhook": "https://x.test"})
    assert (error.error_code, error.field) == (ErrorCode.UnknownField, "webhook")


@pytest.mark.parametrize("operation", ["delete", "INSERT", 1, ""])
def test_invalid_operation(operation: object) -> None:
    (error,) = errors_of({"records": [customer()], "operation": operation})
    assert (error.error_code, error.field) == (ErrorCode.InvalidOperation, "operation")
    assert "insert, update, upsert" in error.message


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.test/x",
        "https://",
        "https://user:secret@hooks.test/x",
        "hooks.test/x",
        "https://hooks.test:99999/x",
        "https://hooks test/x",
        42,
    ],
)
def test_invalid_webhook_url(url: object) -> None:
    (error,) = errors_of({"records": [customer()], "webhook_url": url})
    assert (error.error_code, error.field) == (ErrorCode.InvalidWebhookUrl, "webhook_url")


def test_webhook_url_to_loopback_is_not_refused_here() -> None:
    # Network policy (loopback, private ranges) is the gateway's check, not syntax.
    assert validate({"records": [customer()], "webhook_url": "http://127.0.0.1:9/x"}).webhook_url


def test_request_errors_come_before_record_errors_and_all_are_reported() -> None:
    errors = errors_of(
        {"records": [customer(firstName="")], "operation": "delete", "extra": 1},
    )
    assert [e.error_code for e in errors] == [
        ErrorCode.UnknownField,
        ErrorCode.InvalidOperation,
        ErrorCode.MissingRequiredField,
    ]


def test_invalid_json_error() -> None:
    (error,) = invalid_json_error("Expecting value: line 1 column 1 (char 0)").errors
    assert error.error_code is ErrorCode.InvalidJson
    assert "line 1 column 1" in error.message


# --- record errors name the index and the field --------------------------------------------------


def test_missing_required_field() -> None:
    record = customer()
    del record["firstName"]
    error = only_error(record, index=3)
    assert (error.error_code, error.index, error.field) == (
        ErrorCode.MissingRequiredField,
        3,
        "firstName",
    )
    assert error.message == "Customer at index 3 is missing firstName"


@pytest.mark.parametrize("blank", [None, ""])
def test_null_and_empty_string_count_as_missing(blank: object) -> None:
    assert only_error(customer(lastName=blank)).error_code is ErrorCode.MissingRequiredField


def test_invalid_email_shows_the_value() -> None:
    error = only_error(customer(email="x@"), index=5)
    assert (error.error_code, error.field) == (ErrorCode.InvalidFormat, "email")
    assert error.message.startswith("Customer at index 5 has an invalid email: 'x@'")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"firstName": "A" * 101}, "firstName"),
        ({"externalId": "c" * 65}, "externalId"),
        ({"phone": "call me"}, "phone"),
        ({"phone": "+1 " + "5" * 40}, "phone"),
        ({"company": "C" * 201}, "company"),
        (
            {"addresses": [{"type": "home", "line1": "x", "city": "y", "country": "usa"}]},
            "addresses.0.country",
        ),
        ({"importantDates": [{"type": "birthday", "date": "10/12/1815"}]}, "importantDates.0.date"),
        (
            {"addresses": [{"type": "home", "line1": "x", "city": "y", "country": "US"}] * 11},
            "addresses",
        ),
    ],
)
def test_format_and_length_violations(changes: dict[str, Any], field: str) -> None:
    error = only_error(customer(**changes), index=2)
    assert (error.error_code, error.index, error.field) == (ErrorCode.InvalidFormat, 2, field)
    assert error.message.startswith("Customer at index 2 ")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"firstName": 7}, "firstName"),
        ({"email": ["a@b.co"]}, "email"),
        ({"addresses": {"type": "home"}}, "addresses"),
        ({"addresses": ["home"]}, "addresses.0"),
        ({"importantDates": [{"type": "birthday", "date": 18151210}]}, "importantDates.0.date"),
    ],
)
def test_wrong_types(changes: dict[str, Any], field: str) -> None:
    error = only_error(customer(**changes))
    assert (error.error_code, error.field) == (ErrorCode.InvalidFieldType, field)


def test_record_that_is_not_an_object() -> None:
    error = only_error("c-1", index=7)
    assert (error.error_code, error.index, error.field) == (ErrorCode.InvalidFieldType, 7, None)


def test_unknown_fields_top_level_and_nested() -> None:
    record = customer(nickname="Ada")
    record["addresses"] = [{**record["addresses"][0], "zip": "12345"}]
    errors = basic_record_errors(CUSTOMERS, record, 0)
    assert [(e.error_code, e.field) for e in errors] == [
        (ErrorCode.UnknownField, "addresses.0.zip"),
        (ErrorCode.UnknownField, "nickname"),
    ]


def test_nested_required_fields_use_dotted_paths() -> None:
    record = customer(
        addresses=[
            {"type": "home", "line1": "1 Main St", "city": "Springfield", "country": "US"},
            {"type": "work", "line1": "2 Side St"},
        ]
    )
    errors = basic_record_errors(CUSTOMERS, record, 1)
    assert [(e.error_code, e.field) for e in errors] == [
        (ErrorCode.MissingRequiredField, "addresses.1.city"),
        (ErrorCode.MissingRequiredField, "addresses.1.country"),
    ]
    assert errors[1].message == "Customer at index 1 is missing addresses.1.country"


def test_optional_nested_fields_may_be_null() -> None:
    address = {"type": "home", "line1": "x", "line2": None, "city": "y", "country": "US"}
    assert basic_record_errors(CUSTOMERS, customer(addresses=[address]), 0) == []


def test_every_bad_field_of_one_record_is_reported() -> None:
    errors = basic_record_errors(CUSTOMERS, {"externalId": "c-1", "email": "nope"}, 0)
    assert [e.field for e in errors] == ["firstName", "lastName", "email"]


def test_record_basic_failure_is_the_first_error_or_none() -> None:
    failure = record_basic_failure(CUSTOMERS, {"externalId": "c-1", "email": "nope"}, 9)
    assert failure is not None
    assert (failure.field, failure.index) == ("firstName", 9)
    assert record_basic_failure(CUSTOMERS, customer(), 0) is None


# --- the error cap -------------------------------------------------------------------------------


def test_at_most_100_errors_in_first_encountered_order() -> None:
    records = [customer(externalId=f"c-{i}", firstName=None) for i in range(150)]
    errors = errors_of({"records": records})
    assert len(errors) == 100
    assert [e.index for e in errors] == list(range(100))


def test_request_level_errors_leave_out_index_and_field_when_they_do_not_apply() -> None:
    (error,) = errors_of([customer()])
    assert set(error.to_dict()) == {"errorCode", "message", "moreInfo"}


def test_invalid_input_keeps_the_first_100_errors() -> None:
    many = [ApiError(ErrorCode.InvalidValue, f"error {n}", index=n) for n in range(250)]
    kept = InvalidInput(many).errors
    assert [e.index for e in kept] == list(range(100))
    assert InvalidInput(many).to_dict()["errors"][0]["message"] == "error 0"


def test_error_body_format() -> None:
    error = only_error(customer(firstName=None), index=3)
    body = error.to_dict()
    assert body["errorCode"] == "MissingRequiredField"
    assert body["index"] == 3
    assert body["field"] == "firstName"
    assert body["moreInfo"].endswith("#missingrequiredfield")


# --- products through the same engine ------------------------------------------------------------


def test_valid_products() -> None:
    bulk = validate({"records": [product(), product(sku="p-2", price=0, tags=["a"])]}, "products")
    assert len(bulk.records) == 2


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"price": -0.01}, ErrorCode.InvalidValue, "price"),
        ({"price": "1.50"}, ErrorCode.InvalidFieldType, "price"),
        ({"price": True}, ErrorCode.InvalidFieldType, "price"),
        ({"price": float("nan")}, ErrorCode.InvalidValue, "price"),
        ({"currency": "eur"}, ErrorCode.InvalidFormat, "currency"),
        ({"active": "yes"}, ErrorCode.InvalidFieldType, "active"),
        ({"tags": ["a"] * 21}, ErrorCode.InvalidFormat, "tags"),
        ({"tags": ["a", 3]}, ErrorCode.InvalidFieldType, "tags.1"),
        ({"sku": ""}, ErrorCode.MissingRequiredField, "sku"),
        ({"colour": "red"}, ErrorCode.UnknownField, "colour"),
    ],
)
def test_product_errors(changes: dict[str, Any], code: ErrorCode, field: str) -> None:
    error = only_error(product(**changes), PRODUCTS, index=4)
    assert (error.error_code, error.field) == (code, field)
    assert error.message.startswith("Product at index 4 ")


def test_products_may_leave_out_active_and_give_null() -> None:
    assert basic_record_errors(PRODUCTS, product(active=None), 0) == []


# --- semantic checks -----------------------------------------------------------------------------


def semantic(record: dict[str, Any], definition: Any = CUSTOMERS) -> object:
    return semantic_error(definition, record, DEFAULT_REFERENCE_TYPES)


def test_valid_records_have_no_semantic_error() -> None:
    assert semantic(customer()) is None
    assert semantic(product(), PRODUCTS) is None
    assert (
        semantic(customer(importantDates=[{"type": "anniversary", "date": "2024-02-29"}])) is None
    )


def test_unknown_address_type_is_an_invalid_reference() -> None:
    record = customer(
        addresses=[{"type": "moon", "line1": "Tranquility Base", "city": "-", "country": "US"}]
    )
    assert semantic(record) == (
        ErrorCode.InvalidReference,
        "addresses.0.type",
        "Customer address type 'moon' is not one of billing, home, shipping, work",
    )


def test_reference_sets_are_the_tenants() -> None:
    record = customer(
        addresses=[{"type": "moon", "line1": "Tranquility Base", "city": "-", "country": "US"}]
    )
    tenant_types = {**DEFAULT_REFERENCE_TYPES, "address_types": frozenset({"moon"})}
    assert semantic_error(CUSTOMERS, record, tenant_types) is None


def test_impossible_date_is_an_invalid_value() -> None:
    record = customer(importantDates=[{"type": "birthday", "date": "2023-02-30"}])
    assert semantic(record) == (
        ErrorCode.InvalidValue,
        "importantDates.0.date",
        "2023-02-30 is not a real calendar date",
    )


def test_unknown_date_type_is_an_invalid_reference() -> None:
    record = customer(importantDates=[{"type": "wedding", "date": "2020-06-01"}])
    code, field, _ = semantic(record)  # type: ignore[misc]
    assert (code, field) == (ErrorCode.InvalidReference, "importantDates.0.type")


def test_unknown_country_is_an_invalid_value() -> None:
    good = {"type": "home", "line1": "1 Main St", "city": "Springfield", "country": "US"}
    record = customer(addresses=[good, {**good, "type": "work", "country": "XX"}])
    assert semantic(record) == (
        ErrorCode.InvalidValue,
        "addresses.1.country",
        "XX is not an ISO 3166-1 country code",
    )


def test_unknown_currency_is_an_invalid_value() -> None:
    assert semantic(product(currency="XYZ"), PRODUCTS) == (
        ErrorCode.InvalidValue,
        "currency",
        "XYZ is not an ISO 4217 currency code",
    )


def test_semantic_checks_survive_records_that_skipped_basic_validation() -> None:
    # Records from external Kafka producers may be any shape; nothing must blow up.
    weird = customer(addresses="nowhere", importantDates=[None, {"date": 5}], email=3)
    assert semantic(weird) is None
    assert semantic_error(CUSTOMERS, "not a record", DEFAULT_REFERENCE_TYPES) is None  # type: ignore[arg-type]
    failure = record_basic_failure(CUSTOMERS, weird, 0)
    assert failure is not None and failure.error_code is ErrorCode.InvalidFieldType


def test_validation_does_not_modify_the_submitted_records() -> None:
    record = customer()
    before = copy.deepcopy(record)
    validate({"records": [record]})
    semantic(record)
    assert record == before


@pytest.mark.parametrize(
    ("definition", "record", "field"),
    [
        (PRODUCTS, product(active=""), "active"),
        (PRODUCTS, product(tags=""), "tags"),
        (CUSTOMERS, customer(addresses=""), "addresses"),
        (CUSTOMERS, customer(importantDates=""), "importantDates"),
    ],
)
def test_an_empty_string_for_an_optional_non_text_field_is_the_wrong_type(
    definition: Any, record: dict[str, Any], field: str
) -> None:
    """It used to count as absent, and then reached the Avro encoder as it was: a product's
    ``active: ""`` was stored as false, a customer's ``addresses: ""`` was a 500."""
    error = only_error(record, definition)
    assert (error.error_code, error.field) == (ErrorCode.InvalidFieldType, field)


def test_an_empty_string_still_counts_as_not_given_for_an_optional_text() -> None:
    assert basic_record_errors(CUSTOMERS, customer(email="", company=""), 0) == []
    assert only_error(customer(firstName="")).error_code is ErrorCode.MissingRequiredField
