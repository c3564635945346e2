"""kill -9 the watcher at seeded random moments, 20 times over a batch: nothing lost, nothing twice, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

import crash


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_twenty_kills_then_every_file_exactly_once(tmp_path: Path) -> None:
    figures = crash.crash_drill(tmp_path, files=24, bad=2, kills=20)
    verdict = figures.verdict
    assert figures.kills == 20, figures
    assert verdict.exactly_once, verdict
    assert verdict.changed == [], "an input's bytes changed"
    assert verdict.bad_outputs == {}, "an output does not decode completely"
    assert verdict.leftovers == [], "temporary or claimed files left behind"
