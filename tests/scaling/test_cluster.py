"""Server mode end to end: PostgreSQL, a Prefect server, a process pool, two workers.

Everything is started by ``scripts/cluster/cluster.sh`` in a throwaway state
folder and stopped at the end. The real ``denoise_file`` flow is deployed to
the pool and real recordings from the shared media are cleaned by the workers.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import numpy as np
import psutil
import pytest
import soundfile as sf
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from destatic.flows import denoise_file, report_key
from destatic.settings import Settings

pytestmark = pytest.mark.cluster

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "cluster" / "cluster.sh"
POOL = "destatic-test"
ZOMBIE_AFTER_S = 45
RUN_TIMEOUT_S = 300


@dataclass
class Cluster:
    state: Path
    api_url: str
    deployment_id: UUID
    settings: Settings

    def worker_pids(self) -> dict[str, int]:
        return {path.stem: int(path.read_text()) for path in sorted((self.state / "run").glob("worker-*.pid"))}

    def worker_log(self, name: str) -> str:
        return (self.state / "logs" / f"{name}.log").read_text(errors="replace")


def _script(command: str, state: Path, *args: str) -> str:
    env = {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}
    env.update(
        DESTATIC_PYTHON=sys.executable,
        DESTATIC_ZOMBIE_AFTER_SECONDS=str(ZOMBIE_AFTER_S),
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY="30",
        PREFECT_WORKER_QUERY_SECONDS="2",
    )
    done = subprocess.run(
        ["bash", str(SCRIPT), command, str(state), *args],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, f"cluster.sh {command} failed:\n{done.stderr[-4000:]}"
    return done.stdout.strip()


def _processes_of(state: Path) -> list[psutil.Process]:
    """Live processes of the cluster: their command line names the state folder, or their PREFECT_HOME is in it."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if str(state) in " ".join(process.info["cmdline"] or []) or process.environ().get("PREFECT_HOME", "").startswith(str(state)):
                found.append(process)
        except psutil.Error:
            pass
    return found


@pytest.fixture(scope="module")
def cluster(media_dir: Path) -> Iterator[Cluster]:
    if os.geteuid() != 0 and shutil.which("initdb") is None and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL is not installed and installing it with apt needs root")
    # PostgreSQL runs as its own OS user: the state folder must be reachable by it.
    state = Path(tempfile.mkdtemp(prefix="destatic-cluster-"))
    state.chmod(0o755)
    work = Path(tempfile.mkdtemp(prefix="destatic-cluster-files-"))
    try:
        api_url = _script("up", state, "--workers", "2", "--pool", POOL, "--limit", "1").splitlines()[-1]
        assert api_url.startswith("http://127.0.0.1:") and api_url.endswith("/api")
        settings = Settings(
            paths={name: work / name for name in ("inbox", "outbox", "work", "quarantine", "done")},
            output={"mode": "audio", "format": "flac"},
        )
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            deployment_id = denoise_file.from_source(
                source=str(REPO_ROOT), entrypoint="src/destatic/flows.py:denoise_file"
            ).deploy(
                name="cluster-test", work_pool_name=POOL, build=False, push=False,
                print_next_steps=False, ignore_warnings=True,
            )
            yield Cluster(state, api_url, deployment_id, settings)
    finally:
        _script("down", state)
        leftovers = _processes_of(state)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        assert not leftovers, f"still running after down: {[p.info['cmdline'] for p in leftovers]}"


def _submit(cluster: Cluster, source: Path) -> FlowRun:
    output = cluster.settings.paths.outbox / f"{source.stem}.flac"
    return run_deployment(
        cluster.deployment_id,
        parameters={"path": str(source), "output": str(output), "settings": cluster.settings.model_dump(mode="json")},
        timeout=0,
    )


def _wait_final(run_ids: list[UUID], *, timeout_s: float = RUN_TIMEOUT_S) -> list[FlowRun]:
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            runs = [client.read_flow_run(run_id) for run_id in run_ids]
            if all(run.state and run.state.is_final() for run in runs) or time.monotonic() > deadline:
                return runs
            time.sleep(1.0)


def _assert_complete_audio(output: Path, source: Path) -> None:
    assert output.is_file(), f"{output} was not written"
    written = sf.info(str(output))
    assert abs(written.duration - sf.info(str(source)).duration) < 0.05, f"{output} is truncated"


def test_ten_files_each_cleaned_exactly_once(cluster: Cluster, media_dir: Path) -> None:
    pairs = sorted((media_dir / "pairs" / "noizeus").glob("*.wav"))
    if len(pairs) < 10:
        pytest.skip(f"need 10 recordings in {media_dir / 'pairs' / 'noizeus'}, found {len(pairs)}")
    inbox = cluster.settings.paths.inbox
    inbox.mkdir(parents=True, exist_ok=True)
    sources = []
    for recording in pairs[:10]:
        sources.append(inbox / recording.name)
        shutil.copyfile(recording, sources[-1])

    runs = _wait_final([_submit(cluster, source).id for source in sources])

    assert [run.state.type.value for run in runs] == ["COMPLETED"] * 10, [run.state.message for run in runs]
    assert [run.run_count for run in runs] == [1] * 10
    outputs = sorted(cluster.settings.paths.outbox.glob("*.flac"))
    assert [path.stem for path in outputs] == sorted(source.stem for source in sources)
    for source in sources:
        _assert_complete_audio(cluster.settings.paths.outbox / f"{source.stem}.flac", source)
        artifact = Artifact.get(report_key(source))
        assert artifact is not None and source.name in str(artifact.data)
    takers = {name for name in cluster.worker_pids() if any(str(run.id) in cluster.worker_log(name) for run in runs)}
    assert len(takers) == 2, "both workers should have taken runs"


def test_run_of_a_killed_worker_is_finished_by_the_other(cluster: Cluster, media_dir: Path) -> None:
    recording = media_dir / "noise" / "CopyMachine_2.wav"
    if not recording.is_file():
        pytest.skip(f"{recording} is absent")
    # A few minutes of real machine noise, so that the run is still busy when its worker dies.
    audio, rate = sf.read(str(recording), dtype="float32")
    source = cluster.settings.paths.inbox / "long_copy_machine.wav"
    source.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(source), np.concatenate([audio] * 4), rate, subtype="FLOAT")

    run_id = _submit(cluster, source).id
    deadline = time.monotonic() + RUN_TIMEOUT_S
    with get_client(sync_client=True) as client:
        while (run := client.read_flow_run(run_id)).state.type.value != "RUNNING":
            assert not run.state.is_final() and time.monotonic() < deadline, f"run never ran: {run.state}"
            time.sleep(0.1)
    flow_pid = int(str(run.infrastructure_pid).rsplit(":", 1)[-1])
    flow_process = psutil.Process(flow_pid)
    victim = next(name for name, pid in cluster.worker_pids().items() if pid == flow_process.ppid())
    # The machine is lost: the worker and the flow process it started die at once.
    os.killpg(cluster.worker_pids()[victim], signal.SIGKILL)
    flow_process.kill()

    (run,) = _wait_final([run_id], timeout_s=ZOMBIE_AFTER_S + RUN_TIMEOUT_S)

    assert run.state.type.value == "COMPLETED", run.state
    assert run.run_count == 2, "exactly one retry after the crash"
    survivor = next(name for name in cluster.worker_pids() if name != victim)
    assert cluster.worker_log(survivor).count(str(run_id)) >= 1
    with get_client(sync_client=True) as client:
        history = client.read_flow_run_states(run_id)
    assert [state.type.value for state in history].count("COMPLETED") == 1
    assert sorted(path.name for path in cluster.settings.paths.outbox.glob("long_copy_machine*")) == ["long_copy_machine.flac"]
    _assert_complete_audio(cluster.settings.paths.outbox / "long_copy_machine.flac", source)
