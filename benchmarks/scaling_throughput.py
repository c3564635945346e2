"""Files per minute: one process worker, two process workers, and Dask with two processes.

The same real recordings are cleaned in each setup, each time into fresh
work/outbox folders (no cache hits), against one PostgreSQL-backed Prefect
server started by ``scripts/cluster/cluster.sh``. Ratios are to one worker,
measured in the same run.

    python benchmarks/scaling_throughput.py [--files 20] [--state /tmp/destatic-bench]

Needs root or an installed PostgreSQL, and the ``dask`` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from destatic.flows import denoise_file, run_batch
from destatic.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
MEDIA_DIR = REPO_ROOT.parent / "shared" / "media"
SCRIPT = REPO_ROOT / "scripts" / "cluster" / "cluster.sh"
POOL = "destatic-bench"


def cluster(command: str, state: Path, *args: str) -> str:
    env = {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}
    env.update(DESTATIC_PYTHON=sys.executable, PREFECT_WORKER_QUERY_SECONDS="1")
    done = subprocess.run(
        ["bash", str(SCRIPT), command, str(state), *args], env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"cluster.sh {command} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip()


def fresh_settings(root: Path, label: str) -> Settings:
    base = root / label
    return Settings(
        paths={name: base / name for name in ("inbox", "outbox", "work", "quarantine", "done")},
        output={"mode": "audio", "format": "flac"},
    )


def run_on_workers(deployment_id: UUID, sources: list[Path], settings: Settings) -> float:
    """Seconds from submitting one run per file to the last one finishing."""
    started = time.perf_counter()
    run_ids = [
        run_deployment(
            deployment_id,
            parameters={
                "path": str(source),
                "output": str(settings.paths.outbox / f"{source.stem}.flac"),
                "settings": settings.model_dump(mode="json"),
            },
            timeout=0,
        ).id
        for source in sources
    ]
    with get_client(sync_client=True) as client:
        while True:
            states = [client.read_flow_run(run_id).state for run_id in run_ids]
            if all(state.is_final() for state in states):
                break
            time.sleep(0.5)
    elapsed = time.perf_counter() - started
    failed = [state for state in states if not state.is_completed()]
    if failed:
        raise SystemExit(f"{len(failed)} run(s) did not complete: {failed[0]}")
    return elapsed


def run_on_dask(sources: list[Path], settings: Settings, workers: int) -> float:
    """Seconds for ``destatic run`` of every file at once: one denoise-files run on a local Dask cluster."""
    on_dask = settings.model_copy(
        update={"runtime": settings.runtime.model_copy(update={"task_runner": "dask", "dask_workers": workers})}
    )
    started = time.perf_counter()
    rows = run_batch(sources, on_dask, outputs=[settings.paths.outbox / f"{path.stem}.flac" for path in sources])
    elapsed = time.perf_counter() - started
    failed = [row for row in rows if row["status"] != "done"]
    if failed:
        raise SystemExit(f"{len(failed)} file(s) failed on Dask: {failed[0]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20, help="recordings to clean in each setup (default 20)")
    parser.add_argument("--state", type=Path, default=None, help="cluster state folder (default: a new one in /tmp)")
    options = parser.parse_args()

    recordings = sorted((MEDIA_DIR / "pairs" / "noizeus").glob("*.wav"))
    if len(recordings) < options.files:
        raise SystemExit(f"need {options.files} recordings in {MEDIA_DIR / 'pairs' / 'noizeus'}, found {len(recordings)}")
    state = options.state or Path(tempfile.mkdtemp(prefix="destatic-bench-"))
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)
    root = Path(tempfile.mkdtemp(prefix="destatic-bench-files-"))
    sources_dir = root / "sources"
    sources_dir.mkdir()
    sources = []
    for recording in recordings[: options.files]:
        sources.append(sources_dir / recording.name)
        shutil.copyfile(recording, sources[-1])

    seconds: dict[str, float] = {}
    try:
        api_url = cluster("up", state, "--workers", "1", "--pool", POOL, "--limit", "1").splitlines()[-1]
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            with contextlib.redirect_stdout(sys.stderr):
                deployment_id = denoise_file.from_source(
                    source=str(REPO_ROOT), entrypoint="src/destatic/flows.py:denoise_file"
                ).deploy(
                    name="bench", work_pool_name=POOL, build=False, push=False,
                    print_next_steps=False, ignore_warnings=True,
                )
            seconds["1 worker"] = run_on_workers(deployment_id, sources, fresh_settings(root, "one"))
            print(f"1 worker: {seconds['1 worker']:.1f} s", file=sys.stderr, flush=True)
            cluster("workers", state, "--workers", "2", "--pool", POOL, "--limit", "1")
            seconds["2 workers"] = run_on_workers(deployment_id, sources, fresh_settings(root, "two"))
            print(f"2 workers: {seconds['2 workers']:.1f} s", file=sys.stderr, flush=True)
            seconds["Dask(2), destatic run"] = run_on_dask(sources, fresh_settings(root, "dask"), 2)
    finally:
        cluster("down", state)
        shutil.rmtree(root, ignore_errors=True)
        if options.state is None:
            shutil.rmtree(state, ignore_errors=True)

    baseline = seconds["1 worker"]
    print(f"\n{options.files} real recordings (NOIZEUS, ~3 s, 8 kHz), {os.cpu_count()} cores")
    print(f"{'setup':<28}{'seconds':>10}{'files/min':>12}{'vs 1 worker':>14}")
    for label, value in seconds.items():
        print(f"{label:<28}{value:>10.1f}{options.files / value * 60:>12.1f}{baseline / value:>13.2f}x")


if __name__ == "__main__":
    main()
