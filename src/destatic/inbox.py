"""The inbox as a work queue: find stable files, claim them, settle them. No Prefect here.

A file is taken by renaming it into a claim folder of its own
(``inbox/.processing/<id>/files/<relative>``), so that two watchers never
take the same file. Once it is cleaned the result goes to the outbox under
the same relative path and the original to ``done/``; bad input goes to
quarantine beside ``NAME.error.txt``. A file that fails for another reason
(disk full, ffmpeg killed, a bug) goes back to the inbox, its failures
counted in ``inbox/.failures/``, and to quarantine only after
``watch.max_attempts`` such failures.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import TypeVar

from destatic import media
from destatic.errors import BadInputError, blames_destatic, blames_the_file, display_path, reason_of
from destatic.media.atomic import partial_left_behind, process_alive, process_start
from destatic.settings import Settings
from destatic.workspace import residue_output, writes_audio_only

__all__ = [
    "CLAIM_DIR",
    "DISPATCHED_DIR",
    "FAILURES_DIR",
    "SETTLED",
    "STALE_RECORD_S",
    "Claim",
    "FailureRecord",
    "claim",
    "claimed",
    "delivered",
    "dispatched_runs",
    "failure_record",
    "find_ready",
    "forget_dispatch",
    "forget_stale_records",
    "give_back",
    "hand_over",
    "is_claim",
    "media_suffixes",
    "outbox_path",
    "pending",
    "quarantine",
    "ready_files",
    "record_dispatch",
    "release_stale_claims",
    "remove_dead_partials",
    "run_name",
    "settle_failure",
    "settle_success",
    "settled_output",
    "split_waiting",
    "stamped_name",
    "staged",
    "unclaim",
]

CLAIM_DIR = ".processing"
FAILURES_DIR = ".failures"
DISPATCHED_DIR = ".dispatched"
"""The runs of the per-file deployment a watcher handed files to, one record each, until a scan has reported their outcome."""
SETTLED = "settled.json"
STALE_RECORD_S = 3600.0
"""A failure record whose file has left the inbox is forgotten once it is this old."""
_HOST = socket.gethostname()
T = TypeVar("T")
PathT = TypeVar("PathT", bound=PurePath)


def media_suffixes() -> frozenset[str]:
    """The suffixes (lower case, with the dot) of the files a watcher takes."""
    return frozenset(s.lower() for s in (*media.VIDEO_SUFFIXES, *media.AUDIO_SUFFIXES))


def _walk(inbox: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(inbox):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def find_ready(inbox: Path, *, stable_s: float, now: float | None = None) -> list[Path]:
    """Files of `inbox` (subfolders included, hidden names skipped) ready to take.

    A file is ready when it has a media suffix and its size and mtime have not
    changed for `stable_s` seconds (nothing has written to it since). Symbolic
    links are returned too, so that the caller can refuse them.

    Returns
    -------
    list of Path
        Paths relative to `inbox`, sorted.
    """
    suffixes = media_suffixes()
    now = time.time() if now is None else now
    ready = []
    for path in _walk(inbox):
        if path.suffix.lower() not in suffixes:
            continue
        try:
            stat = path.lstat()
        except FileNotFoundError:
            continue
        if now - stat.st_mtime >= stable_s:
            ready.append(path.relative_to(inbox))
    return ready


def ready_files(inbox: Path, settings: Settings) -> tuple[list[Path], list[Path]]:
    """The stable files of `inbox` to take now, and those left alone until ``watch.retry_after_s`` has passed since they failed."""
    found = find_ready(inbox, stable_s=settings.watch.stable_s)
    return split_waiting(found, lambda relative: failure_record(inbox, relative), retry_after_s=settings.watch.retry_after_s)


def split_waiting(
    items: list[T], record_of: Callable[[T], FailureRecord | None], *, retry_after_s: float, now: float | None = None
) -> tuple[list[T], list[T]]:
    """`items` split into those to take now and those whose last failure (``record_of(item)``) is younger than `retry_after_s`."""
    ready, waiting = [], []
    for item in items:
        record = record_of(item)
        waits = record is not None and record.waits(retry_after_s=retry_after_s, now=now)
        (waiting if waits else ready).append(item)
    return ready, waiting


@dataclass(frozen=True)
class Claim:
    """A file taken from the inbox by one watcher: ``inbox/.processing/<id>/files/<relative>``."""

    path: Path
    relative: Path
    folder: Path

    @property
    def inbox(self) -> Path:
        """The watched folder the file was taken from (the claim folder is ``inbox/.processing/<id>``)."""
        return self.folder.parent.parent


def claim(inbox: Path, relative: Path, *, stable_s: float = 0.0) -> Claim | None:
    """Take one file out of the inbox atomically, or None if another watcher was first.

    The file is renamed into a claim folder unique to this call (same file
    system, so the rename is atomic and cannot overwrite); the folder holds
    ``owner.json`` (host, pid, time) so that a dead owner's claims can be
    released. The size and mtime are checked again after the rename: a file
    that is still being written goes back.
    """
    source = inbox / relative
    try:
        before = source.lstat()
    except FileNotFoundError:
        return None
    folder = inbox / CLAIM_DIR / uuid.uuid4().hex
    folder.mkdir(parents=True)
    (folder / "owner.json").write_text(
        json.dumps({"host": _HOST, "pid": os.getpid(), "started": process_start(os.getpid()), "time": time.time()})
    )
    taken = folder / "files" / relative
    taken.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, taken)
    except FileNotFoundError:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    after = taken.lstat()
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or time.time() - after.st_mtime < stable_s:
        unclaim(Claim(taken, relative, folder))
        return None
    return Claim(taken, relative, folder)


def unclaim(taken: Claim) -> None:
    """Put a claimed file back where it was in the inbox (under a free name) and drop its claim folder."""
    back = taken.inbox / taken.relative
    if _present(taken.path):
        back.parent.mkdir(parents=True, exist_ok=True)
        if back.exists():
            back = _free_name(back)
        os.rename(taken.path, back)
    shutil.rmtree(taken.folder, ignore_errors=True)


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def is_claim(path: Path) -> bool:
    """Whether `path` is a claim folder :func:`claim` made (``<inbox>/.processing/<id>``)."""
    return path.is_dir() and path.parent.name == CLAIM_DIR


def claimed(folder: Path) -> Claim | None:
    """The claim of `folder` as :func:`claim` made it, or None once its file has left."""
    files = folder / "files"
    found = list(_walk(files)) if files.is_dir() else []
    if not found:
        return None
    return Claim(found[0], found[0].relative_to(files), folder)


def _utf8(path: Path) -> bool:
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def run_name(taken: Claim) -> str:
    """The name of the flow run that cleans a claimed file: ``denoise-<its name>`` (made printable)."""
    return f"denoise-{display_path(taken.relative.name)}"


def outbox_path(relative: Path, settings: Settings) -> Path:
    """Where the result of ``inbox/relative`` goes: the same relative path in the outbox (an audio format's suffix for audio)."""
    target = settings.paths.outbox / relative
    if writes_audio_only(relative, settings) and settings.output.format:
        target = target.with_suffix(f".{settings.output.format}")
    return target.absolute()


@contextlib.contextmanager
def staged(taken: Claim, target: Path) -> Iterator[tuple[Path, Path]]:
    """Yield the input and output paths a run of a claimed file works with, then put its output at `target`.

    Prefect parameters and logs are JSON and text: a name that is not UTF-8
    is worked on through an ASCII alias, a hard link ``<claim folder>/input<suffix>``
    (or a copy), writing ``<claim folder>/output<suffix>``, which is moved to
    `target` under its real name once the block succeeds. A UTF-8 name is
    worked on where it is.

    Raises
    ------
    BadInputError
        The claimed file is a symbolic link (links are not followed).
    """
    if taken.path.is_symlink():
        raise BadInputError(taken.path, "is a symbolic link; links are not followed")
    if _utf8(taken.path) and _utf8(target):
        yield taken.path, target
        return
    suffix = taken.path.suffix if _utf8(Path(taken.path.suffix)) else ""
    alias = taken.folder / f"input{suffix}"
    if not alias.exists():
        try:
            os.link(taken.path, alias)
        except OSError:
            shutil.copyfile(taken.path, alias)
    out_suffix = target.suffix if _utf8(Path(target.suffix)) else suffix
    staged_output = taken.folder / f"output{out_suffix}"
    yield alias, staged_output
    target.parent.mkdir(parents=True, exist_ok=True)
    for made, wanted in ((residue_output(staged_output), residue_output(target)), (staged_output, target)):
        if made.exists():
            with media.atomic_output(wanted) as partial:
                shutil.move(os.fspath(made), partial)


def stamped_name(target: PathT) -> PathT:
    """`target` with a UTC time stamp added before its extension: the name kept when the plain one is taken."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return target.with_name(f"{target.stem}.{stamp}{target.suffix}")


def _free_name(target: Path) -> Path:
    """`target`, or `target` with a UTC time stamp added when the name is taken."""
    return stamped_name(target) if _present(target) else target


def quarantine(path: Path, root: Path, *, relative: Path | None = None, step: str, reason: str) -> Path:
    """Move a bad input into quarantine, beside ``NAME.error.txt`` saying why.

    Parameters
    ----------
    path : Path
        The input; moved, never deleted.
    root : Path
        The quarantine folder.
    relative : Path or None
        Its path relative to the inbox, kept under `root`; None: its name.
    step, reason : str
        The step that failed and the one-line reason.

    Returns
    -------
    Path
        Where the input now is.
    """
    target = _free_name(root / (relative or Path(path.name)))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(os.fspath(path), target)
    note = target.with_name(target.name + ".error.txt")
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    one_line = " ".join(str(reason).split())
    note.write_text(
        f"file: {display_path(path.name)}\nstep: {step}\nreason: {one_line}\ntime: {when}\n",
        encoding="utf-8",
        errors="backslashreplace",
    )
    return target


@dataclass(frozen=True)
class FailureRecord:
    """The failures of one inbox file for reasons other than its content, kept in ``inbox/.failures/``.

    Keyed by the file's path under the inbox, size and mtime (all kept by the
    claim's renames): a new version of the file starts again from zero.
    """

    file: str
    failures: int
    step: str
    reason: str
    time: float

    def waits(self, *, retry_after_s: float, now: float | None = None) -> bool:
        """Whether the file is still to be left alone after its last failure."""
        return (time.time() if now is None else now) - self.time < retry_after_s


def _record_file(inbox: Path, relative: Path, stat: os.stat_result) -> Path:
    """Where the failures of ``inbox/relative`` are counted, for this size and mtime of it."""
    identity = b"\0".join([os.fsencode(relative), str(stat.st_size).encode(), str(stat.st_mtime_ns).encode()])
    return inbox / FAILURES_DIR / f"{hashlib.sha256(identity).hexdigest()[:32]}.json"


def _record_path(taken: Claim) -> Path:
    """Where the failures of a claimed file are counted."""
    return _record_file(taken.inbox, taken.relative, taken.path.lstat())


def _read_record(path: Path) -> FailureRecord | None:
    try:
        return FailureRecord(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def failure_record(inbox: Path, relative: Path) -> FailureRecord | None:
    """The failures counted for ``inbox/relative`` as it is now (same size and mtime), or None.

    Parameters
    ----------
    inbox : Path
        The watched folder.
    relative : Path
        A file's path under `inbox`, in the inbox or claimed.

    Returns
    -------
    FailureRecord or None
        None when the file has not failed for a reason other than its content
        since it last succeeded, or is gone.
    """
    try:
        stat = (inbox / relative).lstat()
    except FileNotFoundError:
        return None
    return _read_record(_record_file(inbox, relative, stat))


def settle_failure(taken: Claim, settings: Settings, *, step: str, error: Exception) -> str:
    """Settle a claimed file whose run failed at `step`; return the line to log, and note the outcome on `error`.

    Bad input goes to quarantine at once (:func:`~destatic.errors.blames_the_file`).
    Any other failure (transient after its retries, or unexpected) is counted
    in ``inbox/.failures/`` and the file goes back to the inbox untouched, to
    be taken again after ``watch.retry_after_s``; at the
    ``watch.max_attempts``-th failure it goes to quarantine instead, with the
    count and the last reason. A fault in destatic or its settings
    (:func:`~destatic.errors.blames_destatic`) never quarantines the file.
    """
    name, reason = display_path(taken.relative), reason_of(error)
    if not _present(taken.path):
        return f"{name} failed at step {step}: {reason}; the file is gone"
    record = _record_path(taken)
    watch = settings.watch
    blamed = blames_the_file(error)
    previous = None if blamed else _read_record(record)
    failures = (previous.failures if previous is not None else 0) + 1
    if blamed or (failures >= watch.max_attempts and not blames_destatic(error)):
        why = reason if blamed else (
            f"failed {failures} times for reasons other than its content (watch.max_attempts={watch.max_attempts}); last: {reason}"
        )
        where = quarantine(taken.path, settings.paths.quarantine, relative=taken.relative, step=step, reason=why)
        with contextlib.suppress(FileNotFoundError):
            record.unlink()
        if not blamed:
            error.add_note(f"moved to quarantine after {failures} failures")
        return f"{name} failed at step {step}: {why}; moved to {where}"
    record.parent.mkdir(parents=True, exist_ok=True)
    entry = FailureRecord(file=name, failures=failures, step=step, reason=reason, time=time.time())
    with media.atomic_output(record) as partial:
        partial.write_text(json.dumps(entry.__dict__), encoding="utf-8")
    unclaim(taken)
    outcome = (
        f"left in the inbox (a fault in destatic or its settings, not in the file: failure {failures}, never quarantined for it)"
        if blames_destatic(error)
        else f"left in the inbox (failure {failures} of {watch.max_attempts})"
    ) + f", taken again after {watch.retry_after_s:g} s"
    error.add_note(outcome)
    return f"{name} failed at step {step}: {reason}; {outcome}"


def settle_success(taken: Claim, output: Path, settings: Settings) -> None:
    """Settle a claimed file cleaned into `output`: its failures forgotten, the original to ``done/``, the claim released.

    ``settled.json`` is written first and the claim folder removed last, so a
    run killed at any point finds, when run again, either the file still
    claimed (cleaned again, from the cache, and delivered over the same
    output) or where its output went (:func:`settled_output`).
    """
    with media.atomic_output(taken.folder / SETTLED) as partial:
        partial.write_text(json.dumps({"output": os.fsdecode(output)}), encoding="utf-8")
    with contextlib.suppress(FileNotFoundError):
        _record_path(taken).unlink()
    done = _free_name(settings.paths.done.absolute() / taken.relative)
    done.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(os.fspath(taken.path), done)
    shutil.rmtree(taken.folder, ignore_errors=True)


def settled_output(folder: Path) -> Path | None:
    """The output of a claim settled by an earlier attempt of its run (its folder then removed), or None."""
    settled = folder / SETTLED
    if claimed(folder) is not None or not settled.is_file():
        return None
    output = Path(json.loads(settled.read_text(encoding="utf-8"))["output"])
    shutil.rmtree(folder, ignore_errors=True)
    return output


def delivered(taken: Claim, settings: Settings) -> Path | None:
    """The output of a claim whose run settled it as done (its file out of the claim, its output in the outbox), or None."""
    target = outbox_path(taken.relative, settings)
    return target if claimed(taken.folder) is None and _present(target) else None


def pending(inbox: Path) -> int:
    """How many files wait in `inbox`: not yet taken (media or not), or claimed and not yet settled."""
    claims = sum(1 for folder in _claim_folders(inbox) if claimed(folder) is not None)
    return claims + sum(1 for _ in _walk(inbox))


def give_back(taken: Claim, settings: Settings, error: Exception) -> str | None:
    """Release a claim its run ended without settling: settle the file as failed, or put it back if that fails too.

    Returns the line to log, or None when the run had settled the file.
    The claim folder is removed either way.
    """
    try:
        if not _present(taken.path):
            return None
        try:
            return settle_failure(taken, settings, step="claim", error=error)
        except Exception as unsettled:  # quarantine or the inbox's state unwritable: the watcher goes on
            unclaim(taken)
            return f"{display_path(taken.relative)} could not be settled ({reason_of(unsettled)}); put back in the inbox"
    finally:
        shutil.rmtree(taken.folder, ignore_errors=True)


def hand_over(taken: Claim, flow_run_id: str) -> None:
    """Record in the claim's ``owner.json`` that the per-file run `flow_run_id` now owns it (see :func:`release_stale_claims`)."""
    owner_json = taken.folder / "owner.json"
    owner = json.loads(owner_json.read_text())
    with media.atomic_output(owner_json) as partial:
        partial.write_text(json.dumps({**owner, "flow_run": flow_run_id}))


def record_dispatch(taken: Claim, flow_run_id: str, output: Path) -> None:
    """Remember that the per-file run `flow_run_id` cleans `taken` into `output`, so that a later scan reports how it ended."""
    folder = taken.inbox / DISPATCHED_DIR
    folder.mkdir(exist_ok=True)
    with media.atomic_output(folder / f"{flow_run_id}.json") as partial:
        partial.write_text(json.dumps({"file": str(taken.relative), "claimed": display_path(taken.path), "output": str(output)}))


def dispatched_runs(inbox: Path) -> dict[str, dict[str, str]]:
    """The runs recorded by :func:`record_dispatch` and not yet forgotten: ``{flow_run_id: {"file", "claimed", "output"}}``."""
    runs = {}
    for record in sorted((inbox / DISPATCHED_DIR).glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            runs[record.stem] = json.loads(record.read_text(encoding="utf-8"))
    return runs


def forget_dispatch(inbox: Path, flow_run_id: str) -> bool:
    """Delete a run's dispatch record; False when another watcher sharing the inbox did first (it reports that run)."""
    try:
        (inbox / DISPATCHED_DIR / f"{flow_run_id}.json").unlink()
    except FileNotFoundError:
        return False
    return True


def forget_stale_records(inbox: Path) -> None:
    """Delete the failure records of files that have left the inbox, once :data:`STALE_RECORD_S` old."""
    folder = inbox / FAILURES_DIR
    if not folder.is_dir():
        return
    present = set()
    claims = [taken for entry in _claim_folders(inbox) if (taken := claimed(entry)) is not None]
    for relative, path in [*((path.relative_to(inbox), path) for path in _walk(inbox)), *((t.relative, t.path) for t in claims)]:
        with contextlib.suppress(FileNotFoundError):
            present.add(_record_file(inbox, relative, path.lstat()).name)
    for record in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if record.name not in present and time.time() - record.stat().st_mtime > STALE_RECORD_S:
                record.unlink()


def _claim_folders(inbox: Path) -> list[Path]:
    root = inbox / CLAIM_DIR
    return sorted(root.iterdir()) if root.is_dir() else []


def release_stale_claims(inbox: Path, *, run_is_over: Callable[[str], bool]) -> list[Path]:
    """Put back into the inbox the files whose claim nobody will settle.

    A claim handed to a run of the per-file deployment (``flow_run`` in its
    ``owner.json``) is given back once ``run_is_over(flow_run)`` says that run
    is over (crashed, cancelled) without having settled it, whatever the
    host; any other claim once the process that made it, on this host, is gone
    (its PID not running, or now another process's: :func:`~destatic.media.atomic.process_alive`).

    Returns
    -------
    list of Path
        The relative paths put back.
    """
    released = []
    for folder in _claim_folders(inbox):
        try:
            owner = json.loads((folder / "owner.json").read_text())
        except (OSError, ValueError):
            continue
        if owner.get("flow_run"):
            if not run_is_over(owner["flow_run"]):
                continue
        elif owner.get("host") != _HOST or process_alive(int(owner.get("pid", 0)), owner.get("started")):
            continue
        taken = claimed(folder)
        if taken is not None:
            unclaim(taken)
            released.append(taken.relative)
        shutil.rmtree(folder, ignore_errors=True)
    return released


def remove_dead_partials(*roots: Path) -> list[Path]:
    """Delete the temporary files under `roots` left by processes of this host that are gone (kill -9).

    Only names made by :func:`destatic.media.atomic.partial_path` on this host
    are touched, and only when the process that made them is gone (its PID
    not running, or now another process's: :func:`~destatic.media.atomic.partial_left_behind`);
    symbolic links are not followed. On a folder shared by several hosts, each one's
    watcher sweeps only its own host's leftovers.

    Returns
    -------
    list of Path
        The files deleted.
    """
    removed = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                if not partial_left_behind(name):
                    continue
                path = Path(folder) / name
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed
