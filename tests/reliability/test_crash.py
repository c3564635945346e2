"""kill -9 the watcher at seeded random moments, 20 times over a batch: nothing lost, nothing twice, nothing half-written."""

from __future__ import annotations

import pytest

import drills

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> drills.CrashFigures:
    """One drill for the module: 20 kills over 24 WAVs and 2 bad files, then undisturbed runs."""
    return drills.crash_drill(tmp_path_factory.mktemp("crash"), files=24, bad=2, kills=20)


def test_twenty_kills_then_every_file_exactly_once_and_complete(drill: drills.CrashFigures) -> None:
    verdict = drill.verdict
    assert drill.kills == 20, drill
    assert verdict.exactly_once, verdict
    assert verdict.changed == [], "an input's bytes changed"
    assert verdict.bad_outputs == {}, "an output does not decode completely"


def test_no_temporary_file_left_after_kills(drill: drills.CrashFigures) -> None:
    assert drill.verdict.leftovers == [], "temporary or claimed files left behind"
