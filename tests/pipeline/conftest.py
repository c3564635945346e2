"""Fixtures for the pipeline tests: a Prefect server, settings in tmp_path, sample files."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest



@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server and database for the whole session (started once, on first use)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90), temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Any]:
    """Build Settings whose folders all live in tmp_path; keyword groups override."""
    from destatic.settings import load_settings

    def build(**groups: dict[str, Any]) -> Any:
        paths = {name: tmp_path / name for name in ("inbox", "outbox", "work", "quarantine", "done")}
        paths.update(groups.pop("paths", {}))
        for folder in ("inbox", "outbox"):
            Path(paths[folder]).mkdir(parents=True, exist_ok=True)
        runtime = {"retry_delay_s": 0.0, **groups.pop("runtime", {})}
        watch = {"stable_s": 0.0, **groups.pop("watch", {})}
        return load_settings(paths=paths, runtime=runtime, watch=watch, **groups)

    return build


@pytest.fixture
def task_runs() -> Callable[..., dict[str, list[Any]]]:
    """The :func:`final_task_runs` helper, for tests."""
    return final_task_runs


def final_task_runs(flow_run_id: Any, *, expected: int | None = None, timeout: float = 30.0) -> dict[str, list[Any]]:
    """Task runs of a flow run by task name, once every one is in a final state.

    Task-run states reach the server asynchronously: poll until all are final
    (and, with `expected`, until that many task runs exist).
    """
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            final = all(run.state is not None and run.state.is_final() for run in runs)
            if final and (expected is None or len(runs) >= expected):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"task runs of {flow_run_id} not final after {timeout} s: {[(r.name, r.state_name) for r in runs]}")
            time.sleep(0.2)
    by_task: dict[str, list[Any]] = {}
    for run in runs:
        by_task.setdefault(run.name.rsplit("-", 1)[0], []).append(run)
    return by_task


def denoise_runs_of(path: Path, *, under: bool = False) -> list[Any]:
    """Flow runs of denoise-file whose ``path`` parameter is `path` (or, with `under`, inside it), oldest first."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["denoise-file"])), sort=FlowRunSort.START_TIME_ASC
        )
    if under:
        return [run for run in runs if Path(run.parameters.get("path", "")).is_relative_to(path)]
    return [run for run in runs if run.parameters.get("path") == str(path)]


@pytest.fixture
def denoise_runs() -> Callable[..., list[Any]]:
    """The :func:`denoise_runs_of` helper, for tests."""
    return denoise_runs_of
