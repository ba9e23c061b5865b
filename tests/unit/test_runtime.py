"""Every long-running service tunes the garbage collector before it starts serving."""

from __future__ import annotations

import gc

import pytest

import api.app
import consumers.app
import streams.app
from bulk_ingest import cli
from bulk_ingest.runtime import YOUNG_GENERATION_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restored_collector():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tuning_freezes_start_up_objects_and_collects_young_objects_less_often(
    restored_collector,
):
    gc.unfreeze()
    tune_garbage_collector()
    assert gc.get_freeze_count() > 1000  # the modules and objects start-up built
    assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD > 700


@pytest.mark.parametrize(
    ("command", "module", "entry"),
    [
        ("gateway", api.app, "run_gateway"),
        ("worker", streams.app, "run_worker"),
        ("consumers", consumers.app, "run_consumers"),
    ],
)
def test_each_service_is_tuned_before_it_runs(monkeypatch, command, module, entry):
    calls: list[str] = []
    monkeypatch.setattr(cli, "tune_garbage_collector", lambda: calls.append("tuned"))
    monkeypatch.setattr(module, entry, lambda settings: calls.append("ran"))
    monkeypatch.setattr("sys.argv", ["bulk-ingest", command])
    assert cli.main([command]) == 0
    assert calls == ["tuned", "ran"]
