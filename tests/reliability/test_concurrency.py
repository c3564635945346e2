"""Two watcher processes on one inbox: every file is taken by exactly one of them."""

from __future__ import annotations

from pathlib import Path

import pytest

import drills


def _check(figures: drills.ConcurrencyFigures) -> None:
    verdict = figures.verdict
    assert sorted(figures.returncodes) in ([0, 1], [1, 1]), "a watcher crashed"
    assert verdict.exactly_once, verdict
    assert verdict.changed == [] and verdict.bad_outputs == {} and verdict.leftovers == []
    assert figures.runs_per_file == {name: 1 for name in verdict.expected}, "a file was run by both watchers"


@pytest.mark.slow  # tests/pipeline/test_watch.py has two watchers on three files in the default run
@pytest.mark.usefixtures("prefect_harness")
def test_two_watchers_eight_files(tmp_path: Path) -> None:
    _check(drills.two_watchers(tmp_path, files=6, bad=2))


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_two_watchers_fifty_files(tmp_path: Path) -> None:
    _check(drills.two_watchers(tmp_path, files=48, bad=2))
