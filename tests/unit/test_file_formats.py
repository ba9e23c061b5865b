"""Format detection, profiling, row reading, mappings and row building: pure, on tmp files."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import openpyxl
import pytest

from domain.bulk_requests import Operation
from domain.entities import DEFAULT_REFERENCE_TYPES, EntityRegistry, default_schemas_dir
from domain.errors import InvalidInput
from domain.file_formats import (
    detect_encoding,
    open_rows,
    profile_file,
    read_options,
    sniff_delimiter,
)
from domain.file_types import (
    FileFormat,
    FileProfile,
    FileRejected,
    SourceRow,
    UnreadableFile,
    ZipCaps,
)
from domain.import_mapping import plan_columns, plan_keys, resolve_target
from domain.import_request import parse_import_request
from domain.import_rows import RowRouter, convert_cell
from domain.zip_archives import check_zip_caps

REGISTRY = EntityRegistry.load(default_schemas_dir())
CUSTOMERS = REGISTRY.get("customers")
PRODUCTS = REGISTRY.get("products")
CAPS = ZipCaps(max_uncompressed_bytes=10 * 1024 * 1024, max_ratio=100)


def write(tmp_path: Path, data: bytes, name: str = "upload") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rows_of(path: Path, profile: FileProfile, **overrides: str) -> tuple[tuple[str, ...], list]:
    with open_rows(path, read_options(profile, **overrides), CAPS) as table:
        return table.header, list(table.rows)


# --- detection ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "encoding"),
    [
        (b"\xef\xbb\xbfa,b", "utf-8-sig"),
        ("a,b".encode("utf-16"), "utf-16"),
        (b"a,b\n1,2", "utf-8"),
        ("a,b\n1,2".encode("utf-16-le"), "utf-16-le"),
        ("a,b\n1,2".encode("utf-16-be"), "utf-16-be"),
    ],
)
def test_encoding_comes_from_the_bom_or_the_nul_pattern(head, encoding):
    assert detect_encoding(head) == encoding


@pytest.mark.parametrize(
    ("sample", "delimiter"),
    [
        ("a,b,c\n1,2,3\n", ","),
        ("a;b;c\n1;2,5;3\n", ";"),
        ("a\tb\n1\t2\n", "\t"),
        ("a|b|c\n1|2|3\n", "|"),
        ('name;note\n"x;y";"a, b, c, d"\n', ";"),
        ("single column\nvalue\n", ","),
    ],
)
def test_delimiter_is_sniffed(sample, delimiter):
    assert sniff_delimiter(sample) == delimiter


def test_spreadsheet_csv_profile(tmp_path):
    text = 'Name;City\r\nZoë;"Paris\r\nCedex"\r\nÉmile;Lyon\r\n'
    path = write(tmp_path, b"\xef\xbb\xbf" + text.encode())
    profile = profile_file(path, CAPS)
    assert (profile.format, profile.encoding, profile.delimiter) == (
        FileFormat.CSV,
        "utf-8-sig",
        ";",
    )
    assert profile.columns == ("Name", "City")
    header, rows = rows_of(path, profile)
    assert header == ("Name", "City")
    assert rows == [SourceRow(2, ["Zoë", "Paris\r\nCedex"]), SourceRow(4, ["Émile", "Lyon"])]


def test_blank_lines_are_skipped_but_counted(tmp_path):
    path = write(tmp_path, b"a,b\n\n1,2\n,\n3,4\n")
    _, rows = rows_of(path, profile_file(path, CAPS))
    assert [(r.line, r.values) for r in rows] == [(3, ["1", "2"]), (5, ["3", "4"])]


def test_undecodable_bytes_fail_only_their_row(tmp_path):
    path = write(tmp_path, b"a,b\n1,ok\n2,caf\xe9\n3,fine\n")
    profile = profile_file(path, CAPS)
    assert profile.warnings and "Line 3" in profile.warnings[0]
    _, rows = rows_of(path, profile)
    assert [r.line for r in rows] == [2, 3, 4]
    assert rows[1].values is None and "column 2" in rows[1].problem
    _, fixed = rows_of(path, profile, encoding="cp1252")
    assert fixed[1].values == ["2", "café"]


def test_utf16_with_bom_reads_like_utf8(tmp_path):
    path = write(tmp_path, "Name\tCity\r\nZoë\tParis\r\n".encode("utf-16"))
    profile = profile_file(path, CAPS)
    assert (profile.encoding, profile.delimiter, profile.columns) == (
        "utf-16",
        "\t",
        ("Name", "City"),
    )
    assert rows_of(path, profile)[1] == [SourceRow(2, ["Zoë", "Paris"])]


def test_ndjson_header_is_the_first_objects_keys(tmp_path):
    path = write(tmp_path, b'{"sku": "a", "price": 1}\n\nnot json\n[1]\n{"sku": "b"}\n')
    profile = profile_file(path, CAPS)
    assert (profile.format, profile.columns) == (FileFormat.NDJSON, ("sku", "price"))
    _, rows = rows_of(path, profile)
    assert [(r.line, r.code.value if r.problem else None) for r in rows] == [
        (1, None),
        (3, "InvalidJson"),
        (4, "InvalidFieldType"),
        (5, None),
    ]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"\xd0\xcf\x11\xe0\x00\x00", ".xls"),
        (b'[{"a": 1}]', "NDJSON"),
        (b"\x00\x01\x02\x03\xff\x00\x00\x00\x10", "binary"),
    ],
)
def test_unsupported_files_are_rejected_with_a_reason(tmp_path, data, words):
    with pytest.raises(FileRejected, match=words):
        profile_file(write(tmp_path, data), CAPS)


# --- archives -------------------------------------------------------------------------------------


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_zip_with_one_csv_is_profiled_by_its_member(tmp_path):
    path = write(tmp_path, zip_of({"data/c.csv": b"a;b\n1;2\n", "__MACOSX/._c.csv": b"junk"}))
    profile = profile_file(path, CAPS)
    assert (profile.format, profile.content, profile.member) == (
        FileFormat.ZIP,
        FileFormat.CSV,
        "data/c.csv",
    )
    assert rows_of(path, profile)[1] == [SourceRow(2, ["1", "2"])]


def test_zip_bomb_is_refused_from_its_central_directory(tmp_path):
    path = write(tmp_path, zip_of({"c.csv": b"0" * (4 * 1024 * 1024)}))
    with pytest.raises(FileRejected, match="zip bomb"):
        profile_file(path, CAPS)


def test_zip_over_the_size_cap_is_refused(tmp_path):
    infos = [zipfile.ZipInfo("a.csv"), zipfile.ZipInfo("b.csv")]
    infos[0].file_size, infos[0].compress_size = 6 * 1024 * 1024, 3 * 1024 * 1024
    infos[1].file_size, infos[1].compress_size = 6 * 1024 * 1024, 3 * 1024 * 1024
    with pytest.raises(FileRejected, match="more than"):
        check_zip_caps(infos, CAPS)


def test_truncated_and_ambiguous_zips_are_refused(tmp_path):
    whole = zip_of({"c.csv": b"a,b\n" + b"1,2\n" * 1000})
    with pytest.raises(FileRejected, match="truncated or corrupt"):
        profile_file(write(tmp_path, whole[: len(whole) // 2], "half"), CAPS)
    with pytest.raises(FileRejected, match="exactly one"):
        profile_file(write(tmp_path, zip_of({"a.csv": b"a\n", "b.csv": b"b\n"}), "two"), CAPS)


def test_member_that_expands_beyond_its_declared_size_is_unreadable(tmp_path):
    honest = zip_of({"c.csv": b"a,b\n" + b"1,2\n" * 100})
    path = write(tmp_path, honest)
    profile = profile_file(path, CAPS)
    bomb = zip_of({"c.csv": b"a,b\n" + b"1,2\n" * 5_000_000})
    path.write_bytes(bomb)  # the stored file changed after its upload was checked
    with pytest.raises(UnreadableFile), open_rows(path, read_options(profile), CAPS) as table:
        list(table.rows)


# --- XLSX -----------------------------------------------------------------------------------------


def test_xlsx_sheets_profile_and_rows_by_row_number(tmp_path):
    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active.append(["ignore me"])
    sheet = book.create_sheet("Data")
    sheet.append(["SKU", "Price", "Active"])
    sheet.append(["a", 349, True])
    sheet.append([None, None, None])
    sheet.append([1001, 2.5, False])
    path = tmp_path / "book.bin"  # no .xlsx suffix: detection goes by content
    book.save(path)
    profile = profile_file(path, CAPS)
    assert (profile.format, profile.sheets, profile.columns) == (
        FileFormat.XLSX,
        ("Notes", "Data"),
        ("ignore me",),
    )
    header, rows = rows_of(path, profile, sheet="Data")
    assert header == ("SKU", "Price", "Active")
    assert [(r.line, tuple(r.values)) for r in rows] == [
        (2, ("a", 349, True)),
        (4, (1001, 2.5, False)),
    ]


# --- mappings -------------------------------------------------------------------------------------


def test_dotted_paths_resolve_into_nested_fields():
    assert resolve_target(CUSTOMERS, "addresses.0.city").steps == ("addresses", 0, "city")
    for bad in ("nickname", "addresses.city", "addresses.10.city", "email.x"):
        with pytest.raises(InvalidInput) as caught:
            resolve_target(CUSTOMERS, bad)
        assert caught.value.errors[0].error_code.value == "UnknownField"


def test_default_mapping_matches_names_case_insensitively_and_explicit_wins():
    header = ["EXTERNALID", "firstname", "Surname", "email", "Mail"]
    mapping = plan_columns(
        CUSTOMERS, header, {"Surname": "lastName", "Mail": "email", "email": None}
    )
    assert [(c.column, c.target.path) for c in mapping.columns] == [
        ("EXTERNALID", "externalId"),
        ("firstname", "firstName"),
        ("Surname", "lastName"),
        ("Mail", "email"),
    ]
    assert [c.column for c in mapping.source_columns] == [
        "EXTERNALID",
        "firstname",
        "Surname",
        "Mail",
    ]


def test_header_level_problems_are_all_reported():
    header = ["id", "First", "City"]
    with pytest.raises(InvalidInput) as caught:
        plan_columns(
            CUSTOMERS,
            header,
            {"id": "externalId", "First": "firstName", "City": "addresses.0.city", "Nope": "email"},
        )
    found = {(e.error_code.value, e.field) for e in caught.value.errors}
    assert found == {
        ("InvalidParameter", "field_mappings.Nope"),
        ("MissingRequiredField", "lastName"),
        ("MissingRequiredField", "addresses.0.type"),
        ("MissingRequiredField", "addresses.0.line1"),
        ("MissingRequiredField", "addresses.0.country"),
    }


def test_two_columns_on_one_field_is_refused():
    # (a default match never conflicts: an explicit mapping to the same field takes precedence)
    with pytest.raises(InvalidInput, match="both map"):
        plan_columns(
            CUSTOMERS,
            ["externalId", "firstName", "lastName", "Mail", "E-mail"],
            {"Mail": "email", "E-mail": "email"},
        )


# --- rows -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field", "expected"),
    [
        ("349.00", "price", 349.0),
        (" 12 ", "price", 12.0),
        (349, "price", 349.0),
        ("true", "active", True),
        ("0", "active", False),
        ("YES", "active", True),
        (1, "active", True),
        ("office, wood", "tags", ["office", "wood"]),
        ('["a", "b"]', "tags", ["a", "b"]),
        (1001, "sku", "1001"),
        (2.0, "sku", "2"),
    ],
)
def test_cells_convert_to_the_field_type(raw, field, expected):
    assert convert_cell(raw, resolve_target(PRODUCTS, field).spec) == expected


def product_router() -> RowRouter:
    header = ["SKU", "Name", "Price", "Currency", "Active"]
    return RowRouter(
        PRODUCTS, plan_columns(PRODUCTS, header, {"SKU": "sku"}), DEFAULT_REFERENCE_TYPES
    )


def test_row_becomes_an_avro_record_with_source_columns():
    routed = product_router().route(SourceRow(7, ["d-1", "Desk", "349.00", "EUR", ""]), 5)
    assert routed["index"] == 5 and routed["line"] == 7 and routed["key"] == "d-1"
    assert routed["error"] is None
    assert routed["record"] == {
        "sku": "d-1",
        "name": "Desk",
        "price": 349.0,
        "currency": "EUR",
        "active": True,
        "tags": None,
    }
    assert routed["source"] == {
        "SKU": "d-1",
        "Name": "Desk",
        "Price": "349.00",
        "Currency": "EUR",
        "Active": "",
    }


@pytest.mark.parametrize(
    ("values", "code", "field"),
    [
        (["d-1", "Desk", "cheap", "EUR", ""], "InvalidFieldType", "price"),
        (["d-1", "", "3", "EUR", ""], "MissingRequiredField", "name"),
        (["d-1", "Desk", "3", "ZZZ", ""], "InvalidValue", "currency"),
        (["d-1", "Desk", "-3", "EUR", ""], "InvalidValue", "price"),
    ],
)
def test_bad_rows_fail_with_their_line(values, code, field):
    routed = product_router().route(SourceRow(12, values), 10)
    error = routed["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert error["message"].startswith("Line 12: ")
    assert routed["key"] == "d-1" and routed["line"] == 12


def test_unreadable_row_fails_without_a_record():
    routed = product_router().route(
        SourceRow(3, None, "column 2 holds bytes that are not valid utf-8"), 1
    )
    assert routed["record"] is None and routed["error"]["code"] == "InvalidFormat"
    assert routed["error"]["message"].startswith("Line 3: Product at index 1 cannot be read")


def test_nested_columns_build_arrays_and_empty_items_vanish():
    header = [
        "externalId",
        "firstName",
        "lastName",
        "Type",
        "Street",
        "City",
        "Country",
        "Type 2",
        "Street 2",
        "City 2",
        "Country 2",
    ]
    mapping = plan_columns(
        CUSTOMERS,
        header,
        {
            "Type": "addresses.0.type",
            "Street": "addresses.0.line1",
            "City": "addresses.0.city",
            "Country": "addresses.0.country",
            "Type 2": "addresses.1.type",
            "Street 2": "addresses.1.line1",
            "City 2": "addresses.1.city",
            "Country 2": "addresses.1.country",
        },
    )
    router = RowRouter(CUSTOMERS, mapping, DEFAULT_REFERENCE_TYPES)
    row = ["c-1", "Ada", "L", "home", "1 Main St", "Paris", "FR", "", "", "", ""]
    routed = router.route(SourceRow(2, row), 0)
    assert routed["error"] is None
    assert [a["city"] for a in routed["record"]["addresses"]] == ["Paris"]


def test_ndjson_rows_map_by_key():
    mapping = plan_keys(CUSTOMERS, ("id", "firstName", "lastName"), {"id": "externalId"})
    router = RowRouter(CUSTOMERS, mapping, DEFAULT_REFERENCE_TYPES)
    values = {"id": "c-1", "firstName": "Ada", "lastName": "L", "ignored": 1}
    routed = router.route(SourceRow(4, values), 0)
    assert routed["error"] is None and routed["key"] == "c-1"
    assert routed["source"] == {"id": "c-1", "firstName": "Ada", "lastName": "L"}


# --- the request ----------------------------------------------------------------------------------


def test_import_request_defaults():
    request = parse_import_request(
        REGISTRY,
        {
            "file_id": "0" * 8 + "-0000-4000-8000-" + "0" * 12,
            "entity": "customers",
            "delimiter": "tab",
        },
    )
    assert request.operation is Operation.INSERT and request.delimiter == "\t"
    assert request.field_mappings == {} and request.exclusive is False


def test_import_request_collects_every_problem():
    with pytest.raises(InvalidInput) as caught:
        parse_import_request(
            REGISTRY,
            {
                "entity": "customers",
                "encoding": "klingon",
                "exclusive": "yes",
                "field_mappings": ["a"],
            },
        )
    found = {(e.error_code.value, e.field) for e in caught.value.errors}
    assert found == {
        ("MissingRequiredField", "file_id"),
        ("InvalidParameter", "encoding"),
        ("InvalidFieldType", "exclusive"),
        ("InvalidFieldType", "field_mappings"),
    }


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe" + "name\x00,city\nAda,London\n".encode("utf-16-le"),
        b'{"a\\u0000b": 1}\n',
    ],
)
def test_a_header_holding_u0000_is_refused_at_upload(tmp_path: Path, data: bytes) -> None:
    """Found by the fuzzer: the profile (stored as jsonb, which cannot hold U+0000) was a 500."""
    with pytest.raises(FileRejected, match="U\\+0000"):
        profile_file(write(tmp_path, data), CAPS)
