"""Server mode end to end: PostgreSQL, a Prefect server, a process pool, two workers, the watcher.

Everything is started by ``scripts/cluster/cluster.sh`` in a throwaway state
folder and stopped at the end. ``destatic deploy`` puts the per-file flow and
the scheduled watcher on the pool, as docs/scaling.md tells a user to; real
recordings dropped into the inbox are claimed by the watcher's scans, handed
to one per-file run each and cleaned by the workers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import soundfile as sf
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL, temporary_settings

from destatic.inbox import CLAIM_DIR, DISPATCHED_DIR

from destatic.workspace import report_key

pytestmark = pytest.mark.cluster

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "cluster" / "cluster.sh"
POOL = "destatic-test"
NAME = "cluster-test"
ZOMBIE_AFTER_S = 45
RUN_TIMEOUT_S = 420
FOLDERS = ("inbox", "outbox", "work", "quarantine", "done")


@dataclass
class Cluster:
    state: Path
    api_url: str
    files: Path

    def folder(self, name: str) -> Path:
        return self.files / name

    def worker_pids(self) -> dict[str, int]:
        return {path.stem: int(path.read_text()) for path in sorted((self.state / "run").glob("worker-*.pid"))}

    def worker_log(self, name: str) -> str:
        return (self.state / "logs" / f"{name}.log").read_text(errors="replace")

    def file_runs(self) -> list[FlowRun]:
        """Runs of the per-file deployment, oldest first."""
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(f"denoise-file/{NAME}")
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
        return sorted(runs, key=lambda run: run.created)


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


def _deploy(api_url: str, files: Path) -> str:
    """``destatic deploy``, the documented command, with the folders from the environment as a user sets them."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("DESTATIC_")}
    env.update({f"DESTATIC_PATHS__{name.upper()}": str(files / name) for name in FOLDERS if name != "inbox"})
    env["PREFECT_API_URL"] = api_url
    done = subprocess.run(
        [sys.executable, "-m", "destatic", "deploy", "--pool", POOL, "--name", NAME,
         str(files / "inbox"), "--interval", "5", "--stable", "2"],
        env=env, cwd=files, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.fixture(scope="module")
def cluster(media_dir: Path) -> Iterator[Cluster]:
    if os.geteuid() != 0 and shutil.which("initdb") is None and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL is not installed and installing it with apt needs root")
    # PostgreSQL runs as its own OS user: the state folder must be reachable by it.
    state = Path(tempfile.mkdtemp(prefix="destatic-cluster-"))
    state.chmod(0o755)
    files = Path(tempfile.mkdtemp(prefix="destatic-cluster-files-"))
    (files / "inbox").mkdir()
    try:
        api_url = _script("up", state, "--workers", "2", "--pool", POOL, "--limit", "2").splitlines()[-1]
        assert api_url.startswith("http://127.0.0.1:") and api_url.endswith("/api")
        deployed = _deploy(api_url, files)
        assert f"denoise-file/{NAME}" in deployed and f"watch-inbox/{NAME}-watch" in deployed
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield Cluster(state, api_url, files)
    finally:
        _script("down", state)
        deadline = time.monotonic() + 10
        while (leftovers := _processes_of(state)) and time.monotonic() < deadline:
            time.sleep(0.5)  # a process may be between its stop signal and its exit
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(files, ignore_errors=True)
        assert not leftovers, f"still running after down: {[p.info['cmdline'] for p in leftovers]}"


def _drop(source: Path, inbox: Path, name: str) -> Path:
    """Put a file into the inbox in one rename, as a careful uploader does."""
    staged = inbox.parent / f".staged-{Path(name).name}"
    shutil.copyfile(source, staged)
    (inbox / name).parent.mkdir(parents=True, exist_ok=True)
    os.rename(staged, inbox / name)
    return inbox / name


def _until(condition: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(1.0)
    return value


def _leftovers(cluster: Cluster) -> list[Path]:
    """Files in the inbox or its claims, and half-written files anywhere (the records of dispatched runs not yet reported aside)."""
    root = cluster.folder("inbox")
    inbox = [path for path in root.rglob("*") if path.is_file() and path.parent != root / DISPATCHED_DIR]
    partials = [path for name in ("outbox", "work") for path in cluster.folder(name).rglob("*.partial*")]
    return inbox + partials


def _assert_complete_audio(output: Path, source_frames: int) -> None:
    assert output.is_file(), f"{output} was not written"
    assert sf.info(str(output)).frames == source_frames, f"{output} is truncated"


def test_ten_files_each_cleaned_exactly_once(cluster: Cluster, media_dir: Path) -> None:
    recordings = sorted((media_dir / "pairs" / "noizeus").glob("*.wav"))[:10]
    if len(recordings) < 10:
        pytest.skip(f"need 10 recordings in {media_dir / 'pairs' / 'noizeus'}, found {len(recordings)}")
    inbox, outbox, done = cluster.folder("inbox"), cluster.folder("outbox"), cluster.folder("done")
    (inbox / "sub").mkdir()
    names = [f"sub/{path.name}" if index % 3 == 0 else path.name for index, path in enumerate(recordings)]
    for recording, name in zip(recordings, names):
        _drop(recording, inbox, name)

    runs = _until(
        lambda: (runs := cluster.file_runs()) and len(runs) >= 10 and all(run.state.is_final() for run in runs) and runs,
        timeout_s=RUN_TIMEOUT_S, what="ten per-file runs final",
    )

    assert len(runs) == 10, [run.parameters["path"] for run in runs]
    assert [run.state.type.value for run in runs] == ["COMPLETED"] * 10, [run.state.message for run in runs]
    assert [run.run_count for run in runs] == [1] * 10
    assert len({run.parameters["path"] for run in runs}) == 10
    assert sorted(str(path.relative_to(outbox)) for path in outbox.rglob("*.wav")) == sorted(names)
    assert sorted(str(path.relative_to(done)) for path in done.rglob("*.wav")) == sorted(names)
    for recording, name in zip(recordings, names):
        _assert_complete_audio(outbox / name, sf.info(str(recording)).frames)
        artifact = Artifact.get(report_key(done / name))
        assert artifact is not None and Path(name).name in str(artifact.data)
    table = Artifact.get("destatic-watch")
    assert table is not None and {row["status"] for row in json.loads(table.data)} <= {"dispatched", "done"}  # a later scan reports the finished
    assert _leftovers(cluster) == []
    assert not list(cluster.folder("quarantine").rglob("*"))
    takers = {name for name in cluster.worker_pids() if any(str(run.id) in cluster.worker_log(name) for run in runs)}
    assert len(takers) == 2, "both workers should have taken per-file runs"


def test_run_of_a_killed_worker_is_finished_by_the_other(cluster: Cluster, media_dir: Path) -> None:
    recording = media_dir / "noise" / "CopyMachine_2.wav"
    if not recording.is_file():
        pytest.skip(f"{recording} is absent")
    # A few minutes of real machine noise, so that the run is still busy when its worker dies.
    audio, rate = sf.read(str(recording), dtype="float32")
    long_wav = cluster.files / "long_copy_machine.wav"
    sf.write(str(long_wav), np.concatenate([audio] * 4), rate, subtype="FLOAT")
    _drop(long_wav, cluster.folder("inbox"), long_wav.name)
    before = {run.id for run in cluster.file_runs()}

    def running() -> FlowRun | None:
        mine = [run for run in cluster.file_runs() if run.id not in before]
        assert all(not run.state.is_final() for run in mine), [run.state for run in mine]
        return next((run for run in mine if run.state.type.value == "RUNNING" and run.infrastructure_pid), None)

    run = _until(running, timeout_s=RUN_TIMEOUT_S, what="the long file's run running on a worker")
    flow_process = psutil.Process(int(str(run.infrastructure_pid).rsplit(":", 1)[-1]))
    victim = next(name for name, pid in cluster.worker_pids().items() if pid == flow_process.ppid())
    # The machine is lost: the worker and the flow process it started die at once.
    os.killpg(cluster.worker_pids()[victim], signal.SIGKILL)
    flow_process.kill()

    with get_client(sync_client=True) as client:
        run = _until(
            lambda: (final := client.read_flow_run(run.id)).state.is_final() and final,
            timeout_s=ZOMBIE_AFTER_S + RUN_TIMEOUT_S, what="the killed run finished by the other worker",
        )
        history = client.read_flow_run_states(run.id)

    assert run.state.type.value == "COMPLETED", run.state
    assert run.run_count == 2, "exactly one rerun after the crash"
    assert [state.type.value for state in history].count("COMPLETED") == 1
    survivor = next(name for name in cluster.worker_pids() if name != victim)
    assert str(run.id) in cluster.worker_log(survivor)
    assert [r.id for r in cluster.file_runs() if r.id not in before] == [run.id], "the file was dispatched twice"
    outbox, done = cluster.folder("outbox"), cluster.folder("done")
    assert sorted(path.name for path in outbox.glob("long_copy_machine*")) == ["long_copy_machine.wav"]
    assert sorted(path.name for path in done.glob("long_copy_machine*")) == ["long_copy_machine.wav"]
    _assert_complete_audio(outbox / long_wav.name, sf.info(str(long_wav)).frames)
    assert not any((cluster.folder("inbox") / CLAIM_DIR).iterdir())
    # The killed process's half-written files go at the next scans of the watcher.
    _until(lambda: _leftovers(cluster) == [], timeout_s=120, what=f"no leftovers: {_leftovers(cluster)}")


def _kill_postgres(cluster: Cluster) -> None:
    """kill -9 the PostgreSQL server (its postmaster), then wait for its backends to notice and exit."""
    postmaster = psutil.Process(int((cluster.state / "postgres" / "data" / "postmaster.pid").read_text().split()[0]))
    backends = postmaster.children(recursive=True)
    postmaster.kill()
    psutil.wait_procs([postmaster, *backends], timeout=60)


def _kill_server(cluster: Cluster) -> None:
    """kill -9 the Prefect server's process group (``prefect server start`` and anything it runs)."""
    os.killpg(int((cluster.state / "run" / "server.pid").read_text()), signal.SIGKILL)
    _until(lambda: not any("server" in " ".join(p.info["cmdline"] or []) and "start" in " ".join(p.info["cmdline"] or [])
                           for p in _processes_of(cluster.state)), timeout_s=30, what="the Prefect server gone")


def test_database_then_server_killed_mid_batch_each_file_out_once(cluster: Cluster, media_dir: Path) -> None:
    """kill -9 PostgreSQL halfway through a batch and start it again, then the same with the Prefect server."""
    recordings = sorted((media_dir / "pairs" / "noizeus").glob("*.wav"))[10:20]
    if len(recordings) < 10:
        pytest.skip(f"need 20 recordings in {media_dir / 'pairs' / 'noizeus'}, found {len(recordings) + 10}")
    _script("workers", cluster.state, "--workers", "2", "--pool", POOL, "--limit", "2")  # the previous test killed one
    before = {run.id for run in cluster.file_runs()}
    inbox, outbox, done = cluster.folder("inbox"), cluster.folder("outbox"), cluster.folder("done")
    names = [f"outage/{path.name}" for path in recordings]
    for recording, name in zip(recordings, names):
        _drop(recording, inbox, name)

    def out(folder: Path) -> list[str]:
        return sorted(str(path.relative_to(folder)) for path in (folder / "outage").glob("*") if path.is_file())

    _until(lambda: len(out(done)) >= 4, timeout_s=RUN_TIMEOUT_S, what="four files of the batch done")
    done_at_kill, killed = len(out(done)), time.monotonic()
    _kill_postgres(cluster)
    time.sleep(5)  # the server and the workers meet the dead database
    _script("postgres", cluster.state)
    _kill_server(cluster)
    time.sleep(5)
    assert _script("server", cluster.state).splitlines()[-1] == cluster.api_url, "the server came back on another address"

    _until(lambda: out(done) == sorted(names) and not _leftovers(cluster), timeout_s=RUN_TIMEOUT_S + ZOMBIE_AFTER_S,
           what=f"the batch settled after the kills ({done_at_kill} of 10 done at the first)")
    settled = time.monotonic()
    assert out(outbox) == sorted(names), "each file's output once in the outbox"
    assert out(done) == sorted(names), "each original once in done/"
    for recording, name in zip(recordings, names):
        _assert_complete_audio(outbox / name, sf.info(str(recording)).frames)
    assert not list(cluster.folder("quarantine").rglob("*")), "a good file was quarantined"
    assert not list((inbox / ".failures").glob("*.json")), "the outage was counted as a file's failure"
    assert not [path for path in (inbox / CLAIM_DIR).rglob("*") if path.is_file()], "a claim was left stranded"
    alive = [name for name, pid in cluster.worker_pids().items() if psutil.pid_exists(pid)]
    assert len(alive) == 2, f"a worker gave up during the outage: {alive}"
    runs = [run for run in cluster.file_runs() if run.id not in before]  # named after their claim folders, not the files
    states = sorted(f"{run.state.type.value}x{run.run_count}" for run in runs)
    print(f"\ncluster outage drill: {done_at_kill} of 10 done at the database kill, batch settled {settled - killed:.0f} s after it; "
          f"{len(runs)} denoise-file runs for 10 files (state x run count: {', '.join(states)})")
