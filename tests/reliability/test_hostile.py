"""Every hostile input of the catalogue through the real watcher: outcome, intact input, no leftovers, no leaks.

The inputs of each batch are dropped into one inbox and ``watch_inbox`` runs
over them under the Prefect test harness (the unprivileged batch runs
``destatic watch --once`` without root's capabilities). Each case is then judged on the file
system: where its input went, with which bytes, what the outbox holds.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

import hostile
import hostile_runs
from hostile import CASES, Case

# Defects found by these tests, each waiting for a fix in the pipeline or media layer.
KNOWN_DEFECTS: dict[str, str] = {}


def _param(case: Case) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_DEFECTS[case.name])] if case.name in KNOWN_DEFECTS else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Iterator[dict[str, object]]:
    """Batches run on first use, once per module; their context (secrets, listener) shared."""
    root = tmp_path_factory.mktemp("hostile")
    ctx = hostile.make_context(root)
    state: dict[str, object] = {"root": root, "ctx": ctx, "results": {}}
    yield state
    ctx.listener.close()
    for result in state["results"].values():
        if isinstance(result, hostile_runs.BatchResult) and not result.root.is_relative_to(root):
            shutil.rmtree(result.root, ignore_errors=True)


def batch_result(world: dict[str, object], batch: str) -> hostile_runs.BatchResult:
    results: dict[str, object] = world["results"]  # type: ignore[assignment]
    if batch not in results:
        try:
            results[batch] = hostile_runs.run_batch(batch, world["root"] / batch, world["ctx"])  # type: ignore[operator]
        except hostile_runs.Unavailable as error:
            results[batch] = error
    result = results[batch]
    if isinstance(result, hostile_runs.Unavailable):
        pytest.skip(f"batch {batch!r} cannot run here: {result}")
    return result  # type: ignore[return-value]


def test_catalogue_covers_the_issue() -> None:
    names = {case.name for case in CASES}
    assert len(CASES) >= 30 and len(names) == len(CASES)
    assert {case.outcome for case in CASES} == {"processed", "quarantined", "ignored", "deferred", "vanished", "retried"}
    assert {case.batch for case in CASES} == set(hostile.BATCHES)
    assert len({case.relative for case in CASES if case.batch == "main"}) == len(hostile.cases_in("main"))


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_case(world: dict[str, object], case: Case) -> None:
    """Outcome and reason as expected, input bytes intact, output complete or absent, a one-line note."""
    result = batch_result(world, case.batch)
    assert hostile_runs.case_problems(case, result.observed[case.name], result.settings) == []


@pytest.mark.parametrize("batch", hostile.BATCHES)
def test_batch_leaves_nothing_behind_and_leaks_nothing(world: dict[str, object], batch: str) -> None:
    result = batch_result(world, batch)
    assert result.leftovers == [], "partial or claimed files left behind"
    assert result.leaks == [], "secret bytes found in the pipeline's files"
    assert result.connections == 0, "something connected to the loopback listener"
    if batch == "unprivileged":
        assert result.returncode == 1, result.log[-2000:]
    else:
        files = {row["file"] for row in result.rows}
        taken = {str(c.relative) for c in hostile.cases_in(batch) if c.outcome not in ("ignored",)}
        assert files == taken, "the watcher did not take every file, or took one twice"
