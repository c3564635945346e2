"""The work folder as a cache with a size budget: entries, least recently used first out. No Prefect here.

Every step writes its artifact set into the file's work folder, named
``<step>-<key><suffix>`` (the report step adds two PNGs beside its JSON), and
Prefect keeps a small result record per key in ``<work>/results/<key>``. An
entry is one artifact set with its record, or what is left of one file's
work folder (its report), or the other records Prefect wrote there (the
errors of failed runs); entries are evicted whole, never a half. A
missing artifact is a cache miss, so an evicted step is recomputed on the
next run.

Eviction goes by value, then age: gains files first (only the inverse STFT
reads them, and its result is kept), then the other big intermediates (the
extracted and cleaned audio, encoded outputs), then the tiny profiles and
plots, and the reports last. A work folder a run is using (see
:func:`in_use`) is never touched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from destatic import __version__
from destatic._digest import file_digest
from destatic.code_version import version_of

__all__ = [
    "DEFAULT_MAX_BYTES",
    "KEY_CHARS",
    "RESULTS",
    "STEP_MODULES",
    "Entry",
    "Pruned",
    "artifact_name",
    "artifact_path",
    "budget_bytes",
    "clear",
    "entries",
    "in_use",
    "mark_used",
    "prune",
    "step_key",
    "step_version",
]

RESULTS = "results"
"""Prefect's result records, one file per cache key, in the work folder."""
LOCK = ".in-use"
DEFAULT_MAX_BYTES = 5 * 1024**3
FREE_SPACE_SHARE = 0.10
KEY_CHARS = 20
"""Hex digits of a step's cache key."""
STEP_MODULES: dict[str, str] = {
    "extract": "destatic.steps.extract",
    "profile": "destatic.steps.profile",
    "subtract": "destatic.steps.subtract",
    "inverse": "destatic.steps.inverse",
    "residue": "destatic.steps.residue",
    "loudness": "destatic.steps.loudness",
    "remux": "destatic.steps.remux",
    "export": "destatic.steps.export",
    "plots": "destatic.steps.report",
}
"""The module each cached step runs: its version, in every key, is a digest of that module's code (:func:`step_version`)."""
RUN_RECORDS = "run records"
"""The entry of Prefect's records that no step's key names (a failed flow or task run's error): read by no one, evicted first."""
_RANK = {"subtract": 0, RUN_RECORDS: 0, "profile": 2, "plots": 2}
"""Eviction order of a step's artifact sets; every other step's (big intermediates) is 1."""
BIG_RANK, FOLDER_RANK = 1, 3
_KEY = re.compile(f"[0-9a-f]{{{KEY_CHARS}}}")
_ARTIFACT = re.compile(rf"\A(?P<step>{'|'.join(STEP_MODULES)})-(?P<key>[0-9a-f]{{{KEY_CHARS}}})(?:-[a-z]+)?\.[^.]+\Z")


def artifact_name(step: str, key: str, suffix: str) -> str:
    """The file name of a step's artifact: ``<step>-<key><suffix>`` (the one naming rule every step and the cache share)."""
    return f"{step}-{key}{suffix}"


def artifact_path(
    step: str, inputs: Mapping[str, Any], suffix: str, *, content: tuple[str, ...] = (), ignore: tuple[str, ...] = (), key: str | None = None
) -> Path:
    """Where `step` writes its artifact for `inputs`: ``<work_dir>/<step>-<key><suffix>``, `key` being :func:`step_key`'s unless given."""
    key = key or step_key(step, inputs, content=content, ignore=ignore)
    return Path(inputs["work_dir"]) / artifact_name(step, key, suffix)


def step_version(step: str) -> str:
    """The version of `step`'s code: a digest of its module and of every module of destatic it uses (:func:`destatic.code_version.version_of`).

    Any edit of that code makes new keys, so that no cached result of older
    code is handed back; computed once per process.
    """
    return version_of(STEP_MODULES[step])


def _key_part(value: Any) -> Any:
    pydantic = sys.modules.get("pydantic")  # a settings model exists only where pydantic is loaded: not in a step child
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return json.loads(value.model_dump_json())
    if dataclasses.is_dataclass(value) and hasattr(value, "path"):
        return str(value.path)  # a step's record: its artifact's name holds its key
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def step_key(step: str, inputs: Mapping[str, Any], *, content: tuple[str, ...] = (), ignore: tuple[str, ...] = ()) -> str:
    """The cache key of one step for these inputs.

    Parameters
    ----------
    step : str
        A key of :data:`STEP_MODULES`.
    inputs : mapping
        The task's arguments by name.
    content : tuple of str
        Arguments naming files from outside the work folder: hashed by their bytes.
        Every other argument counts by value (paths and records by name).
    ignore : tuple of str
        Arguments that do not change the result (progress handles).

    Returns
    -------
    str
        Hex digest, :data:`KEY_CHARS` characters.
    """
    parts: dict[str, Any] = {"step": step, "version": step_version(step), "destatic": __version__}
    for name in sorted(inputs):
        if name in ignore:
            continue
        value = inputs[name]
        parts[name] = file_digest(Path(value)) if name in content and value is not None else _key_part(value)
    blob = json.dumps(parts, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:KEY_CHARS]


@dataclass(frozen=True)
class Entry:
    """One evictable unit of the work folder.

    Attributes
    ----------
    folder : Path
        The file's work folder.
    step : str
        The step whose artifact set it is, ``"folder"`` for what is left of the folder, or
        :data:`RUN_RECORDS` (its folder the results folder).
    key : str
        The cache key (empty for a folder).
    files : tuple of Path
        What evicting it deletes (a folder entry deletes the whole folder).
    size : int
        Bytes.
    last_used : float
        When a run last used it (mtime, refreshed by :func:`mark_used`).
    """

    folder: Path
    step: str
    key: str
    files: tuple[Path, ...]
    size: int
    last_used: float

    @property
    def rank(self) -> int:
        """Eviction class: lower goes first."""
        return FOLDER_RANK if self.step == "folder" else _RANK.get(self.step, BIG_RANK)


@dataclass(frozen=True)
class Pruned:
    """What a prune did: entries removed, bytes before and after, the budget."""

    removed: tuple[Entry, ...]
    size_before: int
    size_after: int
    budget: int


def _stat(path: Path) -> os.stat_result | None:
    with contextlib.suppress(FileNotFoundError):
        return path.lstat()
    return None


def entries(work: Path) -> list[Entry]:
    """Every entry of the work folder `work`, result records included in their artifact set's size."""
    work = Path(work)
    results = work / RESULTS
    found: list[Entry] = []
    if not work.is_dir():
        return found
    for folder in sorted(path for path in work.iterdir() if path.is_dir() and path.name != RESULTS):
        sets: dict[tuple[str, str], list[Path]] = {}
        rest: list[Path] = []
        for path in folder.iterdir():
            match = _ARTIFACT.match(path.name)
            if match is None:
                rest.append(path)
            else:
                sets.setdefault((match["step"], match["key"]), []).append(path)
        for (step, key), files in sorted(sets.items()):
            stats = [(path, stat) for path in files if (stat := _stat(path)) is not None]
            record = results / key
            record_stat = _stat(record)
            members = tuple(path for path, _ in stats) + ((record,) if record_stat is not None else ())
            size = sum(stat.st_size for _, stat in stats) + (record_stat.st_size if record_stat is not None else 0)
            last_used = max((stat.st_mtime for _, stat in stats), default=0.0)
            found.append(Entry(folder, step, key, members, size, last_used))
        stats = [stat for path in rest if path.name != LOCK and (stat := _stat(path)) is not None]
        found.append(
            Entry(folder, "folder", "", (folder,), sum(stat.st_size for stat in stats), max((stat.st_mtime for stat in stats), default=0.0))
        )
    records = [(path, stat) for path in (results.iterdir() if results.is_dir() else ())
               if not _KEY.fullmatch(path.name) and (stat := _stat(path)) is not None]
    if records:
        found.append(Entry(results, RUN_RECORDS, "", tuple(path for path, _ in records), sum(stat.st_size for _, stat in records),
                           max(stat.st_mtime for _, stat in records)))
    return found


def budget_bytes(work: Path, max_gb: float | None) -> int:
    """The work folder's budget: ``max_gb`` GB, or (None) 5 GB or a tenth of the space it may take, whichever is smaller.

    The space it may take is the free space of its file system plus what the
    cache already holds (so the budget does not shrink as the cache fills).
    """
    if max_gb is not None:
        return int(max_gb * 1024**3)
    work = Path(work)
    probe = work if work.exists() else next((parent for parent in work.parents if parent.exists()), Path("/"))
    held = sum(entry.size for entry in entries(work))
    return int(min(DEFAULT_MAX_BYTES, FREE_SPACE_SHARE * (shutil.disk_usage(probe).free + held)))


def _busy(folder: Path) -> bool:
    """Whether a run holds `folder` (:func:`in_use`) right now."""
    try:
        handle = open(folder / LOCK, "rb")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _evict(entry: Entry) -> None:
    if entry.step == "folder":
        shutil.rmtree(entry.folder, ignore_errors=True)
        return
    for path in entry.files:  # the artifacts first: a record without its artifact is a miss
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def prune(work: Path, budget: int) -> Pruned:
    """Evict entries of `work`, least valuable and least recently used first, until it holds at most `budget` bytes.

    Result records whose artifacts are gone are deleted too. Folders in use
    are skipped, so the result may stay over budget while runs go on.
    """
    found = entries(work)
    size_before = size = sum(entry.size for entry in found)
    removed = []
    busy: dict[Path, bool] = {}
    for entry in sorted(found, key=lambda entry: (entry.rank, entry.last_used)):
        if size <= budget:
            break
        if busy.setdefault(entry.folder, _busy(entry.folder)):
            continue
        _evict(entry)
        removed.append(entry)
        size -= entry.size
    _drop_orphan_records(Path(work))
    return Pruned(tuple(removed), size_before, size, budget)


def _drop_orphan_records(work: Path) -> None:
    """Delete the result records whose artifact set is gone (evicted, or deleted by hand)."""
    results = work / RESULTS
    if not results.is_dir():
        return
    named = {entry.key for entry in entries(work) if entry.key}
    for record in results.iterdir():
        if _KEY.fullmatch(record.name) and record.name not in named:
            with contextlib.suppress(FileNotFoundError):
                record.unlink()


def clear(work: Path) -> Pruned:
    """Evict everything not in use: :func:`prune` to a budget of nothing."""
    return prune(work, 0)


def mark_used(paths: Iterable[Path]) -> None:
    """Refresh the last use of the artifact sets these files belong to (their mtime), so that they are evicted last."""
    now = time.time()
    for path in paths:
        match = _ARTIFACT.match(Path(path).name)
        if match is None:
            continue
        for member in Path(path).parent.glob(f"{match['step']}-{match['key']}*"):
            with contextlib.suppress(FileNotFoundError):
                os.utime(member, (now, now))


@contextlib.contextmanager
def in_use(folder: Path) -> Iterator[None]:
    """Hold the work folder `folder` for a run: no prune touches it until the block ends (a shared file lock)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
