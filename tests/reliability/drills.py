"""Crash and concurrency drills: real ``destatic watch --once`` processes over a batch of small files.

Shared by ``test_crash.py``, ``test_concurrency.py`` and the report script.
Both need a Prefect API (the test harness) that the subprocesses report to.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import hostile
import hostile_runs
from bare_decode import decode_audio

SEED = 20261123


def make_inputs(inbox: Path, count: int, *, bad: int = 0, seconds: float = 1.0, first: int = 0) -> dict[str, str]:
    """`count` distinct short WAVs and `bad` random-byte .mp4 files, numbered from `first`; name -> SHA-256."""
    inbox.mkdir(parents=True, exist_ok=True)
    source = inbox.parent / "seed-input.wav"
    hostile.run_ffmpeg("-f", "lavfi", "-i", f"aevalsrc={hostile.tone_expr(1)}:s=16000:d={seconds}", "-c:a", "pcm_s16le", source)
    base = source.read_bytes()
    source.unlink()
    rng = np.random.default_rng(SEED + first)
    hashes = {}
    for index in range(first, first + count):
        name = f"f{index:03d}.wav"
        data = bytearray(base)
        data[-2:] = index.to_bytes(2, "little")  # one sample differs: distinct content, same length
        (inbox / name).write_bytes(bytes(data))
        hashes[name] = hostile_runs.sha256(inbox / name)
    for index in range(first, first + bad):
        name = f"bad{index:03d}.mp4"
        (inbox / name).write_bytes(rng.bytes(4096))
        hashes[name] = hostile_runs.sha256(inbox / name)
    return hashes


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group `pgid` is still running."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def group_stacks(pgid: int) -> str:
    """The processes of the process group `pgid` and the Python stack of every thread of each (``py-spy dump``), for a hang's report."""
    listing = subprocess.run(["ps", "-o", "pid=,stat=,etime=,args=", "-g", str(pgid)], capture_output=True, text=True).stdout
    parts = [listing]
    if shutil.which("py-spy") is None:
        return listing + "(py-spy is not installed: no stacks)"
    for line in listing.splitlines():
        dump = subprocess.run(["py-spy", "dump", "--pid", line.split()[0]], capture_output=True, text=True, timeout=60)
        parts.append(dump.stdout + dump.stderr)
    return "\n".join(parts)


def start_watcher(settings: Any, log: Path) -> subprocess.Popen[bytes]:
    """Start ``destatic watch --once`` in a session of its own (so that its orphans can be waited for)."""
    with open(log, "ab") as sink:
        return subprocess.Popen(
            hostile_runs.watch_once(settings), env=hostile_runs.cli_env(settings), cwd=settings.paths.inbox.parent,
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )


def kill_hard(process: subprocess.Popen[bytes], *, drain_s: float = 60.0) -> None:
    """kill -9 the watcher process alone, then wait for the children it orphaned (ffmpeg) to end."""
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + drain_s
    while group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)


@dataclass
class Verdict:
    """Where every input ended up, judged on the file system after the drill."""

    expected: list[str]
    outputs: dict[str, int] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    left_in_inbox: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    bad_outputs: dict[str, str] = field(default_factory=dict)
    leftovers: list[Path] = field(default_factory=list)

    @property
    def exactly_once(self) -> bool:
        """Every good file once in the outbox and in done/, every bad one once in quarantine, nothing else."""
        good = {name: 1 for name in self.expected if name.endswith(".wav")}
        bad = {name: 1 for name in self.expected if not name.endswith(".wav")}
        return self.outputs == good and self.done == good and self.quarantined == bad and not self.left_in_inbox


def _stem_counts(folder: Path, expected: list[str]) -> dict[str, int]:
    """How many files in `folder` are a copy of each expected name (``name`` or ``stem.<stamp>.suffix``)."""
    counts: dict[str, int] = {}
    if not folder.is_dir():
        return counts
    for path in folder.iterdir():
        if path.name.startswith(".") or path.name.endswith(".error.txt"):
            continue
        owner = next((n for n in expected if path.name == n or (path.name.startswith(Path(n).stem + ".") and path.suffix == Path(n).suffix)), path.name)
        counts[owner] = counts.get(owner, 0) + 1
    return counts


def judge(settings: Any, hashes: dict[str, str]) -> Verdict:
    """Count outputs, originals and quarantined files per input; decode every output to its end."""
    paths = settings.paths
    names = sorted(hashes)
    verdict = Verdict(expected=names)
    verdict.outputs = _stem_counts(paths.outbox, names)
    verdict.done = _stem_counts(paths.done, names)
    verdict.quarantined = _stem_counts(paths.quarantine, names)
    verdict.left_in_inbox = sorted(p.name for p in paths.inbox.iterdir() if not p.name.startswith("."))
    for name in names:
        for folder in (paths.done, paths.quarantine):
            if (folder / name).is_file() and hostile_runs.sha256(folder / name) != hashes[name]:
                verdict.changed.append(name)
        output = paths.outbox / name
        if name.endswith(".wav") and output.is_file():
            before, after = decode_audio(paths.done / name, channels=1), decode_audio(output, channels=1)
            if after.errors or after.frames != before.frames or not np.isfinite(after.samples).all():
                verdict.bad_outputs[name] = after.errors or f"{after.frames} frames, original {before.frames}"
    verdict.leftovers = hostile_runs.partial_files(paths.inbox, paths.outbox, paths.work, paths.quarantine, paths.done)
    return verdict


@dataclass
class KillFigures:
    """What every kill drill counts: the files, the kills and when they landed."""

    files: int
    kills: int = 0
    kill_moments_s: list[float] = field(default_factory=list)


@dataclass
class CrashFigures(KillFigures):
    """What a crash drill did and found."""

    done_after_kill: list[int] = field(default_factory=list)
    finished_unkilled: int = 0
    restarts_to_finish: int = 0
    seconds: float = 0.0
    verdict: Verdict | None = None


def _claimed_by(inbox: Path, pid: int) -> bool:
    """True once process `pid` has claimed a file of `inbox` (its scan is done, processing has begun)."""
    for owner in (inbox / ".processing").glob("*/owner.json"):
        try:
            if json.loads(owner.read_text()).get("pid") == pid:
                return True
        except (OSError, ValueError):
            continue
    return False


def _inbox_empty(inbox: Path) -> bool:
    """Nothing left to do: no file in the inbox, none in a claim folder."""
    waiting = any(p for p in inbox.iterdir() if not p.name.startswith("."))
    return not waiting and not any(p.is_file() for p in (inbox / ".processing").glob("*/files/**/*"))


def crash_drill(root: Path, *, files: int = 24, bad: int = 2, kills: int = 20, seed: int = SEED,
                max_kill_s: float = 8.0) -> CrashFigures:
    """kill -9 the watcher `kills` times at seeded random moments of its processing, then let it finish and judge.

    Each run is killed ``uniform(0, max_kill_s)`` seconds after it has claimed
    its files (so the kill lands in processing, not in Python's start-up): the
    CLI process alone, its orphaned ffmpeg left to end as it would. Should the
    batch be done before the last kill, another batch of the same size is
    dropped in. Then watchers run undisturbed until the inbox is empty.
    """
    settings = hostile_runs.settings_for(root)
    inbox = settings.paths.inbox
    hashes = make_inputs(inbox, files, bad=bad)
    rng = np.random.default_rng(seed)
    figures = CrashFigures(files=files + bad)
    log = root / "watchers.log"
    started = time.perf_counter()
    while figures.kills < kills:
        if _inbox_empty(inbox):
            hashes.update(make_inputs(inbox, files, bad=bad, first=len(hashes)))
            figures.files += files + bad
        moment = float(rng.uniform(0.0, max_kill_s))
        process = start_watcher(settings, log)
        while process.poll() is None and not _claimed_by(inbox, process.pid):
            time.sleep(0.02)
        try:
            process.wait(timeout=moment)
            figures.finished_unkilled += 1
        except subprocess.TimeoutExpired:
            kill_hard(process)
            figures.kills += 1
            figures.kill_moments_s.append(round(moment, 2))
            figures.done_after_kill.append(len(list(settings.paths.done.glob("*"))) if settings.paths.done.is_dir() else 0)
    for attempt in range(1, 4):
        process = start_watcher(settings, log)
        process.wait(timeout=600)
        figures.restarts_to_finish = attempt
        if _inbox_empty(inbox):
            break
    figures.seconds = round(time.perf_counter() - started, 1)
    figures.verdict = judge(settings, hashes)
    return figures


@dataclass
class ConcurrencyFigures:
    """Two watchers on one inbox: what each did."""

    files: int
    returncodes: list[int]
    seconds: float
    runs_per_file: dict[str, int]
    verdict: Verdict


def two_watchers(root: Path, *, files: int = 10, bad: int = 2) -> ConcurrencyFigures:
    """Start two ``destatic watch --once`` at the same moment on one inbox and judge the result."""
    settings = hostile_runs.settings_for(root)
    hashes = make_inputs(settings.paths.inbox, files, bad=bad)
    log = root / "watchers.log"
    started, started_at = time.perf_counter(), datetime.now(timezone.utc)
    watchers = [start_watcher(settings, log) for _ in range(2)]
    codes = [watcher.wait(timeout=900) for watcher in watchers]
    seconds = round(time.perf_counter() - started, 1)
    runs: dict[str, int] = {}
    for run in flow_runs_under(settings.paths.inbox / ".processing", since=started_at):
        name = run.name.removeprefix("denoise-")
        runs[name] = runs.get(name, 0) + 1
    return ConcurrencyFigures(files + bad, codes, seconds, runs, judge(settings, hashes))


def flow_runs_under(folder: Path, *, since: datetime) -> list[Any]:
    """denoise-file flow runs created after `since` (at most 200) whose input path lies under `folder` (the claim folders)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterExpectedStartTime

    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["denoise-file"])),
            flow_run_filter=FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(after_=since)),
            limit=200,
        )
    return [run for run in found if Path(run.parameters.get("path", "")).is_relative_to(folder)]


@dataclass
class ServerKillFigures(KillFigures):
    """What a drill killing the watcher's Prefect server did and found."""

    back_after_s: list[float] = field(default_factory=list)
    done_at_kill: list[int] = field(default_factory=list)
    failure_records: int = 0
    runs_per_file: dict[str, int] = field(default_factory=dict)
    tracebacks: int = 0
    outage_lines: list[str] = field(default_factory=list)
    console_lines: int = 0
    seconds: float = 0.0
    verdict: Verdict | None = None


def _server_record(state: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state / "destatic" / "server" / "server.json").read_text())
    except (OSError, ValueError):
        return None


def _answers(api_url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def _until(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s} s: {what}")
        time.sleep(0.1)
    return value


def _done_count(settings: Any, names: list[str]) -> int:
    return sum(_stem_counts(settings.paths.done, names).values())


def _runs_per_file(api_url: str) -> dict[str, int]:
    """How many denoise-file runs the server holds per file (at most 200 runs read)."""
    import urllib.request

    request = urllib.request.Request(f"{api_url}/flow_runs/filter", data=json.dumps({"limit": 200}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        runs = json.loads(answer.read())
    counts: dict[str, int] = {}
    for run in runs:
        if run["name"].startswith("denoise-"):
            counts[run["name"].removeprefix("denoise-")] = counts.get(run["name"].removeprefix("denoise-"), 0) + 1
    return counts


def _settled(settings: Any, names: list[str]) -> bool:
    """Every input out of the inbox and its claims, each in done/ or quarantine."""
    paths = settings.paths
    placed = sum(_stem_counts(paths.done, names).values()) + sum(_stem_counts(paths.quarantine, names).values())
    return _inbox_empty(paths.inbox) and placed >= len(names)


def server_kill_drill(root: Path, *, files: int = 12, bad: int = 1, kills: int = 3, seed: int = SEED,
                      max_kill_s: float = 6.0, timeout_s: float = 600.0, once: bool = False) -> ServerKillFigures:
    """A served ``destatic watch`` on destatic's background server; kill -9 that server `kills` times mid-batch, then judge.

    With `once`, the watcher is ``destatic watch INBOX --once``, which must
    finish the batch through the kills and exit by itself.

    The watcher runs as a user starts it (``destatic watch INBOX --interval 2``,
    no PREFECT_API_URL, its own state folder so that the background server is
    this drill's). Each kill lands ``uniform(0, max_kill_s)`` seconds after the
    server last answered (the first once a file is done, so that runs are
    under way), with files still waiting; the next waits until the watcher has
    brought the server back.
    """
    settings = hostile_runs.settings_for(root)
    inbox, state = settings.paths.inbox, root / "state"
    env = hostile_runs.cli_env(settings)
    env.pop("PREFECT_API_URL")
    env.update(XDG_STATE_HOME=str(state), PREFECT_HOME=str(root / "prefect-home"), DESTATIC_RUNTIME__SERVER="background")
    log = root / "watcher.log"
    rng = np.random.default_rng(seed)
    hashes = make_inputs(inbox, files, bad=bad)
    names = sorted(hashes)
    figures = ServerKillFigures(files=files + bad)
    started, before_stop = time.perf_counter(), 0
    with open(log, "wb") as sink:
        command = hostile_runs.watch_once(settings) if once else [*hostile_runs.watch_once(settings)[:-1], "--interval", "2"]
        watcher = subprocess.Popen(
            command, env=env, cwd=root,
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        _until(lambda: settings.paths.done.is_dir() and any(settings.paths.done.iterdir()), 300, "the watcher's first file done")
        while figures.kills < kills and not _settled(settings, names):
            record = _until(lambda: (r := _server_record(state)) and _answers(r["api_url"]) and r, 300, "the server answering")
            if figures.done_at_kill:  # a file more done since the last kill: the runs are under way again
                _until(lambda: _done_count(settings, names) > figures.done_at_kill[-1] or _settled(settings, names), timeout_s,
                       "a file done after the server came back")
            moment = float(rng.uniform(0.0, max_kill_s))
            time.sleep(moment)
            os.kill(record["pid"], signal.SIGKILL)
            killed = time.monotonic()
            figures.kills += 1
            figures.kill_moments_s.append(round(moment, 2))
            figures.done_at_kill.append(_done_count(settings, names))
            _until(lambda: (r := _server_record(state)) and r["pid"] != record["pid"] and _answers(r["api_url"]), 300,
                   "the watcher bringing its server back")
            figures.back_after_s.append(round(time.monotonic() - killed, 1))
        _until(lambda: _settled(settings, names), timeout_s, "every input settled")
        if once:
            watcher.wait(timeout=120)
        before_stop = log.stat().st_size
        record = _until(lambda: (r := _server_record(state)) and _answers(r["api_url"]) and r, 300, "the server answering")
        figures.runs_per_file = _runs_per_file(record["api_url"])
    finally:
        if watcher.poll() is None:
            os.killpg(watcher.pid, signal.SIGINT)
        try:
            watcher.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(watcher.pid, signal.SIGKILL)
            watcher.wait()
        subprocess.run([sys.executable, "-m", "destatic", "server", "stop"], env=env, capture_output=True, timeout=120)
    figures.seconds = round(time.perf_counter() - started, 1)
    figures.failure_records = len(list((inbox / ".failures").glob("*.json")))
    text = log.read_bytes()[:before_stop].decode(errors="replace")  # not what Ctrl+C at the end prints
    figures.tracebacks = text.count("Traceback")
    figures.outage_lines = [line for line in text.splitlines() if "destatic watch: the Prefect API" in line]
    figures.console_lines = len(text.splitlines())
    figures.verdict = judge(settings, hashes)
    return figures
