"""A bad ``BULK_INGEST_*`` value or ``--brokers`` stops the command with one line naming it,
not a traceback."""

from __future__ import annotations

import pytest

from bulk_ingest.cli import main


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("BULK_INGEST_KAFKA_BROKERS", "three", "BULK_INGEST_KAFKA_BROKERS='three' is not valid"),
        ("BULK_INGEST_KAFKA_BROKERS", "0", "BULK_INGEST_KAFKA_BROKERS must be at least 1"),
        ("BULK_INGEST_PARTITIONS", "-1", "BULK_INGEST_PARTITIONS must be at least 1"),
    ],
)
def test_a_bad_setting_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    said: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["stack", "status"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"bulk-ingest: {said}"), error
    assert error.count("\n") == 1 and "Traceback" not in error


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("0", "argument --brokers: must be at least 1, not 0"),
        ("many", "argument --brokers: not a whole number: 'many'"),
    ],
)
def test_brokers_below_one_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], value: str, said: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["stack", "status", "--brokers", value])
    assert exited.value.code == 2
    assert said in capsys.readouterr().err
