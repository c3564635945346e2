"""Run the hostile catalogue through the real watcher and observe what became of each case.

Shared by the tests and ``scripts/reliability_report.py``: both need a Prefect
API (the test harness) and call :func:`run_batch`. Observations come from the
file system (outbox, ``done/``, quarantine, inbox) and the watcher's rows,
never from the code under test's own account alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import hostile
from bare_decode import decode_audio
from hostile import Case, Context

STABLE_S = 2.0
PARTIAL_MARK = ".partial"


class Unavailable(Exception):
    """This machine cannot set up the world a batch needs (no mount, no setpriv)."""


def settings_for(root: Path, **groups: dict[str, Any]) -> Any:
    """Settings whose five folders live in `root` (inbox and outbox created), no retry delay."""
    from destatic.settings import load_settings

    paths = {name: root / name for name in ("inbox", "outbox", "work", "quarantine", "done")}
    paths.update(groups.pop("paths", {}))
    for folder in ("inbox", "outbox"):
        Path(paths[folder]).mkdir(parents=True, exist_ok=True)
    runtime = {"retry_delay_s": 0.0, **groups.pop("runtime", {})}
    return load_settings(paths=paths, runtime=runtime, **groups)


def sha256(path: Path) -> str | None:
    """SHA-256 of a regular file's bytes; None for anything else (links, FIFOs, sockets, folders)."""
    try:
        if not path.is_file() or path.is_symlink():
            return None
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except PermissionError:
        return None


@dataclass
class Observed:
    """What became of one case."""

    outcome: str
    reason: str = ""
    where: Path | None = None
    output: Path | None = None
    note: Path | None = None
    note_text: str = ""
    hash_before: str | None = None
    hash_after: str | None = None
    row: dict[str, Any] | None = None


@dataclass
class BatchResult:
    """A batch run: per-case observations and what held for the whole batch."""

    batch: str
    root: Path
    settings: Any
    observed: dict[str, Observed] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    leftovers: list[Path] = field(default_factory=list)
    leaks: list[Path] = field(default_factory=list)
    connections: int = 0
    seconds: float = 0.0
    returncode: int | None = None
    log: str = ""


def _note_reason(note: Path) -> tuple[str, str]:
    text = note.read_text(encoding="utf-8", errors="replace")
    reason = next((line.removeprefix("reason:").strip() for line in text.splitlines() if line.startswith("reason:")), "")
    return reason, text


def observe(case: Case, settings: Any, rows: dict[str, dict[str, Any]], hash_before: str | None) -> Observed:
    """Find where a case's input ended up and classify it."""
    relative = case.relative
    paths = settings.paths
    output = paths.outbox / relative
    done = paths.done / relative
    quarantined = paths.quarantine / relative
    left = paths.inbox / relative
    row = rows.get(str(relative))
    if done.exists() and output.exists():
        found = Observed("processed", where=done, output=output)
    elif os.path.lexists(quarantined):
        found = Observed("quarantined", where=quarantined)
        note = quarantined.with_name(quarantined.name + ".error.txt")
        if note.is_file():
            found.note = note
            found.reason, found.note_text = _note_reason(note)
    elif os.path.lexists(left) and row is None:
        found = Observed("ignored", where=left)
    elif os.path.lexists(left) and row["status"] == "failed":
        found = Observed("retried", where=left)
    elif row is not None and row["status"] == "failed" and not os.path.lexists(left):
        found = Observed("vanished", reason=row["reason"])
    else:
        found = Observed("lost")
    if row is not None and not found.reason:
        found.reason = row.get("reason", "")
    found.row = row
    found.hash_before = hash_before
    found.hash_after = sha256(found.where) if found.where is not None else None
    return found


LOSSY_SLACK_FRAMES = 2048


def output_problems(original: Path, output: Path) -> list[str]:
    """Why `output` is not a complete cleaned copy of `original`'s audio (bare ffmpeg decodes both to the end)."""
    before = decode_audio(original, channels=1)
    after = decode_audio(output, channels=1)
    problems = [f"decoding the output: {after.errors}"] if after.errors else []
    if not after.samples.size or not np.isfinite(after.samples).all():
        problems.append("the output's audio is empty or not finite")
    slack = 0 if output.suffix.lower() in (".wav", ".flac", ".mkv") else LOSSY_SLACK_FRAMES
    if abs(after.frames - before.frames) > slack:
        problems.append(f"the output has {after.frames} frames, the original {before.frames}")
    return problems


def case_problems(case: Case, seen: Observed, settings: Any) -> list[str]:
    """Everything wrong with what became of `case`: the test asserts none, the report prints them."""
    problems = []
    if seen.outcome != case.outcome or case.reason.lower() not in seen.reason.lower():
        problems.append(f"expected {case.outcome} ({case.reason!r}), got {seen.outcome}: {seen.reason!r}")
    if case.outcome != "vanished" and seen.hash_after != seen.hash_before:
        problems.append("the input's bytes changed, or the input is lost")
    output = settings.paths.outbox / case.relative
    if case.outcome in ("processed", "deferred") and seen.where is not None and output.is_file():
        problems += output_problems(seen.where, output)
    elif case.outcome not in ("processed", "deferred") and output.exists():
        problems.append("an output was written for an input that failed")
    if case.outcome == "quarantined":
        lines = seen.note_text.splitlines()
        if seen.note is None:
            problems.append("no NAME.error.txt beside the quarantined input")
        elif f"file: {hostile.one_line(case.relative.name)}" not in lines:
            problems.append("the note does not name the file on one line")
        elif sum(line.startswith("reason: ") for line in lines) != 1 or not seen.reason:
            problems.append("the note has no one-line reason")
    if case.outcome == "ignored" and (seen.row is not None or seen.where != settings.paths.inbox / case.relative):
        problems.append("the watcher took it")
    if case.outcome == "retried":
        from destatic.inbox import failure_record

        if failure_record(settings.paths.inbox, case.relative) is None:
            problems.append("no failure counted for the file left in the inbox")
    return problems


def partial_files(*roots: Path) -> list[Path]:
    """Temporary or partial files left anywhere under `roots` (and files left in claim folders)."""
    found = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in hostile.walk_all(root):
            if PARTIAL_MARK in path.name:
                found.append(path)
            elif ".processing" in path.parts and not path.is_dir():
                found.append(path)
    return found


def leaked_secrets(root: Path, ctx: Context) -> list[Path]:
    """Files under `root` (the outside folder excepted, links not followed) holding secret bytes."""
    needles = (hostile.SECRET_TOKEN, ctx.secret_samples())
    hits = []
    for path in hostile.walk_all(root):
        if path.is_relative_to(ctx.outside) or path.is_symlink() or not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if any(needle in data for needle in needles):
            hits.append(path)
    return hits


@contextlib.contextmanager
def tmpfs(path: Path, *, size: str, read_only: bool = False) -> Iterator[Path]:
    """Mount a small tmpfs at `path` for the block (root and mount(8) needed, else :class:`Unavailable`)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise Unavailable(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _hashes(cases: list[Case], inbox: Path) -> dict[str, str | None]:
    return {case.name: sha256(inbox / case.relative) for case in cases}


def _finish(result: BatchResult, cases: list[Case], ctx: Context, before: dict[str, str | None], started: float) -> BatchResult:
    rows = {row["file"]: row for row in result.rows}
    for case in cases:
        result.observed[case.name] = observe(case, result.settings, rows, before[case.name])
    paths = result.settings.paths
    result.leftovers = partial_files(paths.inbox, paths.outbox, paths.work, paths.quarantine, paths.done)
    result.leaks = leaked_secrets(result.root, ctx)
    result.connections = ctx.listener.connections
    result.seconds = time.perf_counter() - started
    return result


def _run_in_process(batch: str, root: Path, ctx: Context, settings: Any) -> BatchResult:
    from destatic.flows import watch_inbox

    inbox = settings.paths.inbox
    cases = hostile.build_batch(batch, inbox, ctx)
    deferred = [case for case in cases if case.outcome == "deferred"]
    hostile.age([inbox / c.relative for c in cases if c not in deferred and os.path.lexists(inbox / c.relative)], 3600)
    before = _hashes(cases, inbox)
    result = BatchResult(batch, root, settings)
    stop = threading.Event()
    helpers = [
        threading.Thread(target=case.during, args=(inbox / case.relative, settings.paths.work, stop), daemon=True)
        for case in cases
        if case.during is not None
    ]
    started = time.perf_counter()
    for helper in helpers:
        helper.start()
    try:
        result.rows = list(watch_inbox(settings))
    finally:
        stop.set()
        for helper in helpers:
            helper.join(timeout=10)
    first = {row["file"] for row in result.rows}
    if deferred:
        waiting = [c for c in deferred if str(c.relative) not in first and (inbox / c.relative).is_file()]
        for case in waiting:
            before[case.name] = sha256(inbox / case.relative)
        hostile.age([inbox / c.relative for c in waiting], 3600)
        second = list(watch_inbox(settings))
        result.rows += second
    result = _finish(result, cases, ctx, before, started)
    for case in deferred:
        seen = result.observed[case.name]
        if seen.outcome == "processed" and str(case.relative) not in first:
            seen.outcome = "deferred"
    return result


def _run_unprivileged(batch: str, root: Path, ctx: Context) -> BatchResult:
    """Run ``destatic watch --once`` without the power to read past file modes (hashes taken before).

    As root, the watcher keeps uid 0 but loses every capability (setpriv), so
    a mode-000 file is as closed to it as to any user, while the venv's
    interpreter, which may sit in root's home, still runs.
    """
    drop: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise Unavailable("needs setpriv(1) to run the watcher without root's capabilities")
        drop = [setpriv, "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]
    world = Path(tempfile.mkdtemp(prefix="destatic-unpriv-", dir="/tmp"))
    settings = settings_for(world)
    inbox = settings.paths.inbox
    cases = hostile.build_batch(batch, inbox, ctx)
    before = _hashes(cases, inbox)
    env = cli_env(settings, home=world)
    command = [*drop, *watch_once(settings)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=world, capture_output=True, text=True, timeout=300)
    result = BatchResult(batch, world, settings, returncode=done.returncode, log=done.stdout + done.stderr)
    return _finish(result, cases, ctx, before, started)


def cli_env(settings: Any, *, home: Path | None = None) -> dict[str, str]:
    """Environment for a ``destatic`` subprocess: these settings' folders, the current Prefect API.

    With `home`, HOME and PREFECT_HOME point there (the watcher's state stays in the batch's folder).
    """
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("DESTATIC_")}
    env.update({
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DESTATIC_PATHS__OUTBOX": str(settings.paths.outbox),
        "DESTATIC_PATHS__WORK": str(settings.paths.work),
        "DESTATIC_PATHS__DONE": str(settings.paths.done),
        "DESTATIC_PATHS__QUARANTINE": str(settings.paths.quarantine),
        "DESTATIC_WATCH__STABLE_S": "0",
        "DESTATIC_RUNTIME__RETRY_DELAY_S": "0",
    })
    if home is not None:
        (home / "prefect-home").mkdir(exist_ok=True)
        env.update({"HOME": str(home), "PREFECT_HOME": str(home / "prefect-home")})
    return env


def watch_once(settings: Any) -> list[str]:
    """The command line of one ``destatic watch INBOX --once``."""
    return [sys.executable, "-m", "destatic", "watch", str(settings.paths.inbox), "--once"]


def run_batch(batch: str, root: Path, ctx: Context) -> BatchResult:
    """Build `batch`'s inputs under `root` and run the watcher once over them (twice if a case is deferred).

    Needs a Prefect API (the test harness). Raises :class:`Unavailable` when the
    machine cannot provide the batch's world.
    """
    root.mkdir(parents=True, exist_ok=True)
    if batch == "unprivileged":
        return _run_unprivileged(batch, root, ctx)
    settings = settings_for(root, watch={"stable_s": STABLE_S, "concurrency": 2 if batch == "main" else 1})
    if batch == "main":
        return _run_in_process(batch, root, ctx, settings)
    mounts = {
        "readonly-outbox": (settings.paths.outbox, "1m", True),
        "full-disk-work": (settings.paths.work, "256k", False),
        "full-disk-outbox": (settings.paths.outbox, "64k", False),
    }
    where, size, read_only = mounts[batch]
    with tmpfs(where, size=size, read_only=read_only):
        return _run_in_process(batch, root, ctx, settings)
