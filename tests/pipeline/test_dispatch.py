"""The watcher in deployment dispatch: one run of the per-file deployment per claimed file.

The runs are executed the way a worker's flow-run process executes them
(``prefect.flow_engine.run_flow`` on the flow run read from the server), in
this process, so that no worker has to start; the full worker path is in
``tests/scaling/test_cluster.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.usefixtures("prefect_harness")

NOT_UTF8 = os.fsdecode(b"caf\xe9 \xff.wav")


@pytest.fixture
def per_file_deployment() -> str:
    """The denoise-file flow as a deployment of the test server (nobody polls it: the tests run its runs)."""
    from destatic.flows import denoise_file

    name = f"dispatch-{uuid.uuid4().hex[:8]}"
    denoise_file.to_deployment(name=name).apply()
    return f"denoise-file/{name}"


def _run_like_a_worker(flow_run_id: Any) -> Any:
    from prefect import get_client
    from prefect.flow_engine import run_flow

    from destatic.flows import denoise_file

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    return run_flow(denoise_file, flow_run=flow_run, return_type="state")


def _runs_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
    by_id = {str(run.id): run for run in runs}
    return {row["file"]: by_id[row["flow_run_id"]] for row in rows}


def test_each_claim_goes_to_one_run_that_settles_it(
    per_file_deployment: str, make_settings, speech_wav: Path, rng: np.random.Generator
) -> None:
    from prefect.artifacts import Artifact

    from destatic.flows import watch_inbox

    from destatic.inbox import CLAIM_DIR, DISPATCHED_DIR, release_stale_claims
    from destatic.flows.watch import run_is_over

    from destatic.workspace import report_key

    settings = make_settings(watch={"dispatch": "deployment", "deployment": per_file_deployment})
    inbox = settings.paths.inbox
    for relative in ("a.wav", "deep/b.wav", NOT_UTF8):
        (inbox / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(speech_wav, inbox / relative)
    (inbox / "broken.mp4").write_bytes(rng.bytes(2048))

    rows = watch_inbox(settings)

    assert sorted(row["status"] for row in rows) == ["dispatched"] * 4
    runs = _runs_of(rows)
    assert {run.state.type.value for run in runs.values()} == {"SCHEDULED"}
    for run in runs.values():
        assert Path(run.parameters["path"]).parent == inbox.absolute() / CLAIM_DIR
        assert set(run.parameters) == {"path", "settings"} and run.name.startswith("denoise-")
        assert Path(run.parameters["settings"]["paths"]["outbox"]).is_absolute()
    assert release_stale_claims(inbox, run_is_over=run_is_over) == [], "claims of runs not yet over stay claimed"
    assert watch_inbox(settings) == [], "a claimed file is not taken twice"

    states = {file: _run_like_a_worker(run.id) for file, run in runs.items()}

    assert states["broken.mp4"].is_failed()
    assert all(state.is_completed() for file, state in states.items() if file != "broken.mp4"), states
    for relative in ("a.wav", "deep/b.wav", NOT_UTF8):
        with open(settings.paths.outbox / relative, "rb") as handle:  # soundfile cannot open a non-UTF-8 name
            assert sf.info(handle).frames == sf.info(str(speech_wav)).frames
        assert (settings.paths.done / relative).read_bytes() == speech_wav.read_bytes()
    assert "step: extract" in (settings.paths.quarantine / "broken.mp4.error.txt").read_text()
    left = [p for p in inbox.rglob("*") if not p.is_dir()]
    assert sorted(p.parent.name for p in left) == [DISPATCHED_DIR] * 4, "files left in the inbox or its claims"
    assert not any((inbox / CLAIM_DIR).iterdir())
    report = Artifact.get(report_key(settings.paths.done / "a.wav"))
    assert report is not None and "a.wav" in str(report.data)

    finished = {row["file"]: row for row in watch_inbox(settings)}
    assert set(finished) == set(runs), "the next scan reports each dispatched file once its run is over"
    assert finished["broken.mp4"]["status"] == "failed" and finished["broken.mp4"]["reason"].startswith("not media"), finished["broken.mp4"]
    for relative in ("a.wav", "deep/b.wav", NOT_UTF8):
        row = finished[relative]
        assert row["status"] == "done" and row["output"] == str(settings.paths.outbox.absolute() / relative), row
        assert isinstance(row["speech_quality"], float) and 1.0 <= row["speech_quality"] <= 5.0, row
    assert watch_inbox(settings) == [], "reported once"
    assert not any((inbox / DISPATCHED_DIR).iterdir())


def test_claim_of_a_run_that_ended_unsettled_is_given_back(per_file_deployment: str, make_settings, speech_wav: Path) -> None:
    from prefect import get_client
    from prefect.states import Crashed

    from destatic.flows import watch_inbox

    from destatic.inbox import release_stale_claims
    from destatic.flows.watch import run_is_over

    settings = make_settings(watch={"dispatch": "deployment", "deployment": per_file_deployment})
    shutil.copyfile(speech_wav, settings.paths.inbox / "lost.wav")
    (row,) = watch_inbox(settings)
    (run,) = _runs_of([row]).values()
    # The flow-run process died and its worker reported the crash: no rerun will come.
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Crashed(message="killed"), force=True)

    assert release_stale_claims(settings.paths.inbox, run_is_over=run_is_over) == [Path("lost.wav")]
    assert (settings.paths.inbox / "lost.wav").read_bytes() == speech_wav.read_bytes()
    (again,) = watch_inbox(settings)
    assert again["status"] == "dispatched" and again["flow_run_id"] != row["flow_run_id"]


def test_rerun_after_the_file_was_settled_releases_the_claim(per_file_deployment: str, make_settings, speech_wav: Path) -> None:
    # A run killed after moving the original to done/ but before removing its
    # claim folder is run again by the crashed-run automation.
    from destatic.flows import denoise_file, watch_inbox
    from destatic.inbox import SETTLED

    settings = make_settings(watch={"dispatch": "deployment", "deployment": per_file_deployment})
    shutil.copyfile(speech_wav, settings.paths.inbox / "once.wav")
    (row,) = watch_inbox(settings)
    (run,) = _runs_of([row]).values()
    claim = Path(run.parameters["path"])
    first = denoise_file(settings=settings, path=claim)
    assert first == (settings.paths.outbox / "once.wav").absolute() and not claim.exists()
    claim.mkdir(parents=True)
    (claim / SETTLED).write_text(f'{{"output": "{first}"}}')

    assert denoise_file(settings=settings, path=claim) == first
    assert not claim.exists()
    assert sorted(p.name for p in settings.paths.outbox.iterdir()) == ["once.wav"]
    assert sorted(p.name for p in settings.paths.done.iterdir()) == ["once.wav"]


def test_missing_deployment_is_named_and_files_stay(make_settings, speech_wav: Path) -> None:
    from destatic.errors import DestaticError
    from destatic.flows import watch_inbox

    settings = make_settings(watch={"dispatch": "deployment", "deployment": "denoise-file/nowhere"})
    shutil.copyfile(speech_wav, settings.paths.inbox / "wait.wav")
    with pytest.raises(DestaticError, match="'denoise-file/nowhere' is not a deployment"):
        watch_inbox(settings)
    assert (settings.paths.inbox / "wait.wav").is_file()


def test_deploy_puts_both_flows_on_the_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from typer.testing import CliRunner

    from destatic.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "inbox").mkdir()
    pool = f"pool-{uuid.uuid4().hex[:8]}"
    assert CliRunner().invoke(app, ["deploy", "--pool", pool, "inbox"]).exit_code == 2, "a missing pool is bad usage"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))

    result = CliRunner().invoke(app, ["deploy", "--pool", pool, "inbox", "--interval", "7", "--name", "d1"])

    assert result.exit_code == 0, result.output
    with get_client(sync_client=True) as client:
        per_file = client.read_deployment_by_name("denoise-file/d1")
        watcher = client.read_deployment_by_name("watch-inbox/d1-watch")
    assert per_file.work_pool_name == watcher.work_pool_name == pool
    assert per_file.entrypoint == "destatic.flows.denoise.denoise_file" and watcher.entrypoint == "destatic.flows.watch.watch_inbox"
    assert [schedule.schedule.interval.total_seconds() for schedule in watcher.schedules] == [7.0]
    settings = watcher.parameters["settings"]
    assert settings["watch"]["dispatch"] == "deployment" and settings["watch"]["deployment"] == "denoise-file/d1"
    assert settings["paths"]["inbox"] == str(tmp_path / "inbox")
    assert set(per_file.parameter_openapi_schema["properties"]) == {"path", "settings", "output", "residue"}, "the form shows no plumbing"
    assert "automation destatic-crashed-runs  created" in result.output or "automation destatic-crashed-runs  unchanged" in result.output
    again = CliRunner().invoke(app, ["deploy", "--pool", pool, "inbox", "--interval", "7", "--name", "d1"])
    assert again.exit_code == 0 and "automation destatic-crashed-runs  unchanged" in again.output
    with get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name(name="destatic-crashed-runs")
    assert automation.enabled and automation.trigger.within.total_seconds() == 90
    assert _settled_trigger_runs(watcher.id), "no automation starts the watcher on destatic.file.settled"


def _settled_trigger_runs(deployment_id: Any) -> bool:
    """Whether an automation of the server runs deployment `deployment_id` on each destatic.file.settled event."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        automations = client.read_automations()
    return any(
        "destatic.file.settled" in getattr(automation.trigger, "expect", set())
        and any(str(getattr(action, "deployment_id", "")) == str(deployment_id) for action in automation.actions)
        for automation in automations
    )


def test_watch_once_names_a_missing_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from destatic.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "inbox").mkdir()
    command = ["watch", "inbox", "--once", "--dispatch", "deployment", "--deployment", "denoise-file/absent"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1
    assert "'denoise-file/absent' is not a deployment" in " ".join(result.output.split())


def test_prefect_deploy_all_makes_the_same_deployments_from_the_checkout(tmp_path: Path) -> None:
    """The repository's prefect.yaml: `prefect deploy --all` as a Prefect user would run it."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    from prefect.exceptions import ObjectAlreadyExists

    repo = Path(__file__).resolve().parents[2]
    pool = "destatic"  # the pool prefect.yaml names
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with get_client(sync_client=True) as client:
        per_file = client.read_deployment_by_name("denoise-file/destatic")
        watcher = client.read_deployment_by_name("watch-inbox/destatic-watch")
    assert per_file.work_pool_name == watcher.work_pool_name == pool
    assert set(per_file.parameter_openapi_schema["properties"]) == {"path", "settings", "output", "residue"}
    assert [schedule.schedule.interval.total_seconds() for schedule in watcher.schedules] == [10.0]
    assert watcher.parameters["settings"]["watch"] == {"dispatch": "deployment", "deployment": "denoise-file/destatic"}
    assert _settled_trigger_runs(watcher.id), "no automation starts the watcher on destatic.file.settled"
