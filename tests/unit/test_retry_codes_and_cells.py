"""Fix and retry, the pure parts: the codes a retry asks for, and a report read back."""

import csv
import io

import pytest

from domain.errors import ErrorCode, InvalidInput
from domain.report_rows import REPORT_COLUMNS, escape_cell, report_row, report_source_names
from domain.retry import parse_retry_codes, retry_columns, unescape_cell


@pytest.mark.parametrize("body", [{}, {"codes": None}])
def test_no_codes_retries_every_failure(body):
    assert parse_retry_codes(body) is None
    assert parse_retry_codes(None, sent=False) is None  # no body at all


def test_a_json_null_body_is_not_an_object():
    with pytest.raises(InvalidInput) as caught:
        parse_retry_codes(None)
    assert caught.value.errors[0].error_code is ErrorCode.InvalidFieldType


def test_codes_narrow_the_retry_and_repeats_count_once():
    assert parse_retry_codes({"codes": ["InvalidValue", "DuplicateKey", "InvalidValue"]}) == (
        "InvalidValue",
        "DuplicateKey",
    )


def test_an_unknown_code_is_named_with_its_position():
    with pytest.raises(InvalidInput) as caught:
        parse_retry_codes({"codes": ["DuplicateKey", "Duplicate", 7]})
    errors = caught.value.errors
    assert [(e.error_code, e.field) for e in errors] == [
        (ErrorCode.InvalidParameter, "codes.1"),
        (ErrorCode.InvalidParameter, "codes.2"),
    ]
    assert "'Duplicate'" in errors[0].message and "not an error code" in errors[0].message


@pytest.mark.parametrize("body", [{"codes": []}, {"codes": "DuplicateKey"}, [], "x"])
def test_an_empty_or_malformed_codes_is_refused(body):
    with pytest.raises(InvalidInput) as caught:
        parse_retry_codes(body)
    assert caught.value.errors[0].error_code is ErrorCode.InvalidFieldType


def test_an_unknown_field_is_refused():
    with pytest.raises(InvalidInput) as caught:
        parse_retry_codes({"code": ["DuplicateKey"]})
    assert caught.value.errors[0].field == "code"


@pytest.mark.parametrize(
    "original",
    [
        "+44 20 7946 0958",
        "=cmd|' /C calc'!A0",
        "+SUM(A1)",
        "-5",
        "@here",
        "\tindented",
        "\rreturn",
        "'quoted",
        "'=already quoted formula",
        "''+two quotes",
        "plain",
        "'",
        "",
    ],
)
def test_unescape_gives_back_exactly_what_escaping_was_given(original):
    escaped = escape_cell(original)
    assert unescape_cell(str(escaped)) == original


def test_unescape_leaves_cells_escaping_cannot_produce():
    assert unescape_cell("'quoted") == "'quoted"
    assert unescape_cell("'") == "'"


def test_report_rows_of_a_file_import_carry_every_source_column_through_csv():
    source = {"Id": "c-1", "First": "=1+1", "Surname": "L", "Phone": "+44 20 7946 0958"}
    names = report_source_names(source)
    row = report_row(
        {
            "index": 0,
            "key": "c-1",
            "error_code": "InvalidValue",
            "error_message": "m",
            "record": None,
            "source": source,
        },
        names,
    )
    text = io.StringIO()
    csv.writer(text).writerows([list(REPORT_COLUMNS) + list(names), row])
    header, back = csv.reader(io.StringIO(text.getvalue()))
    kept = retry_columns(header)
    assert [header[i] for i in kept] == ["Id", "First", "Surname", "Phone"]
    assert [unescape_cell(back[i]) for i in kept] == list(source.values())


def test_a_file_of_source_columns_only_is_taken_whole():
    assert retry_columns(["externalId", "firstName"]) == (0, 1)
