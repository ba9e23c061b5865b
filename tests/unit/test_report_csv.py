"""Report and results rows: the contract's columns, formula-injection escaping."""

import csv
import io
import json

import pytest

from domain.report_rows import (
    REPORT_COLUMNS,
    RESULTS_COLUMNS,
    escape_cell,
    report_row,
    results_row,
    source_column_names,
)


def outcome(**overrides):
    row = {
        "index": 3,
        "key": "c-3",
        "status": "FAILED",
        "record_id": None,
        "error_code": "InvalidReference",
        "error_message": "addresses.0.type 'moon' is not an address type",
        "error_field": "addresses.0.type",
        "line": None,
        "record": {"externalId": "c-3", "firstName": "Ada", "addresses": [{"type": "moon"}]},
    }
    return {**row, **overrides}


def test_columns_follow_the_contract():
    assert REPORT_COLUMNS == ("index", "externalId", "errorCode", "failureReason", "record")
    assert RESULTS_COLUMNS == ("index", "id", "externalId", "status", "errorCode", "error")


@pytest.mark.parametrize("trigger", ["=", "+", "-", "@", "\t", "\r"])
def test_cells_starting_with_a_formula_trigger_are_quoted(trigger):
    assert escape_cell(trigger + "SUM(A1:A9)") == "'" + trigger + "SUM(A1:A9)"


@pytest.mark.parametrize("value", ["Ada", "a=b", " =1", "", '{"a":1}'])
def test_other_text_is_left_alone(value):
    assert escape_cell(value) == value


def test_numbers_and_missing_values():
    assert escape_cell(-5) == -5  # an index or count is a number, not a formula
    assert escape_cell(None) == ""


def test_report_row_holds_the_submitted_record_as_compact_json():
    row = report_row(outcome())
    reason = "addresses.0.type 'moon' is not an address type"
    assert row[:4] == [3, "c-3", "InvalidReference", reason]
    assert row[4] == '{"externalId":"c-3","firstName":"Ada","addresses":[{"type":"moon"}]}'


def test_report_row_escapes_a_hostile_key_but_keeps_the_record_faithful():
    hostile = {"externalId": '=HYPERLINK("http://x")', "firstName": "=1+1"}
    row = report_row(outcome(key=hostile["externalId"], record=hostile))
    assert row[1] == '\'=HYPERLINK("http://x")'
    assert json.loads(row[4]) == hostile


def test_results_row_for_success_and_failure():
    created = outcome(status="CREATED", record_id="4f0c", error_code=None, error_message=None)
    assert results_row(created) == [3, "4f0c", "c-3", "CREATED", "", ""]
    failed = results_row(outcome(error_message="-1 is not allowed"))
    assert failed[-1] == "'-1 is not allowed"


def test_rows_survive_a_csv_round_trip():
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(REPORT_COLUMNS)
    writer.writerow(report_row(outcome(error_message='says "no",\nthen stops')))
    parsed = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert parsed[0]["failureReason"] == 'says "no",\nthen stops'
    assert json.loads(parsed[0]["record"])["addresses"] == [{"type": "moon"}]


def test_absent_optional_fields_do_not_reappear_as_nulls():
    stored = {"externalId": "c-1", "email": None, "addresses": [{"type": "moon", "line2": None}]}
    row = report_row(outcome(record=stored))
    assert json.loads(row[4]) == {"externalId": "c-1", "addresses": [{"type": "moon"}]}


def test_file_imports_add_their_first_three_source_columns():
    source = {"Customer No": "=42", "Given name": "Ada", "Surname": "L", "Town": "Paris"}
    names = source_column_names(source)
    assert names == ("Customer No", "Given name", "Surname")
    row = results_row(outcome(status="CREATED", source=source), names)
    assert row[6:] == ["'=42", "Ada", "L"]
    pairs = [["Customer No", "7"], ["Given name", "Bo"]]
    assert source_column_names(pairs) == ("Customer No", "Given name")
    assert results_row(outcome(source=pairs), names)[6:] == ["7", "Bo", ""]


def test_jobs_without_source_columns_keep_six_columns():
    assert source_column_names(None) == ()
    assert len(results_row(outcome(source=None))) == len(RESULTS_COLUMNS)
