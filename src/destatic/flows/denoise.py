"""Prefect flows: clean one file, and watch an inbox folder.

The flows only order the steps of :mod:`destatic.tasks` and move files
between the inbox, its claim folder, the outbox, ``done/`` and quarantine.
Only bad input is quarantined at once; a file that fails for another reason
(disk full, ffmpeg killed, a bug) goes back to the inbox, and to quarantine
only after ``watch.max_attempts`` such failures, counted in ``inbox/.failures/``.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import soundfile as sf
from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
)
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.states import Failed

from destatic import dsp, media, report, tasks
from destatic.errors import BadInputError, DestaticError, ParameterError, _display_path
from destatic.media.atomic import partial_owner
from destatic.runners import task_runner_for
from destatic.settings import Settings, load_settings

__all__ = [
    "CLAIM_DIR",
    "FAILURES_DIR",
    "LONG_FILE_S",
    "Claim",
    "FailureRecord",
    "claim",
    "default_output",
    "denoise_file",
    "denoise_files",
    "deploy_to_pool",
    "failure_record",
    "find_ready",
    "quarantine",
    "release_stale_claims",
    "report_key",
    "run_batch",
    "serve_watcher",
    "watch_inbox",
    "watcher_deployment",
    "work_dir_for",
]


class _ReasonWithoutTraceback(logging.Filter):
    """Drop the traceback Prefect logs with a flow run that raised a destatic error.

    Those errors are raised on purpose and their one-line message says what
    is wrong (a bad input, a refused setting, a failure retried in vain); the
    traceback only buries it. Anything else keeps its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], DestaticError):
            record.exc_info = None
            record.exc_text = None
        return True


_FLOW_RUN_LOGGER = logging.getLogger("prefect.flow_runs")
if not any(isinstance(existing, _ReasonWithoutTraceback) for existing in _FLOW_RUN_LOGGER.filters):
    _FLOW_RUN_LOGGER.addFilter(_ReasonWithoutTraceback())

CLAIM_DIR = ".processing"
FAILURES_DIR = ".failures"
STALE_RECORD_S = 3600.0
"""A failure record whose file has left the inbox is forgotten once it is this old."""
LONG_FILE_S = 60.0
LAST_RUN = "last-run.json"
_HOST = socket.gethostname()


def _slug(text: str, *, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "file"


def report_key(source: Path) -> str:
    """Prefect artifact key of a file's report: ``destatic-<name>-<digest>``."""
    return f"destatic-{_slug(source.stem)}-{tasks.file_digest(source)[:8]}"


def work_dir_for(source: Path, settings: Settings) -> Path:
    """The work folder of an input: named by its stem and the hash of its bytes."""
    return settings.paths.work.resolve() / f"{_slug(source.stem)}-{tasks.file_digest(source)[:12]}"


def default_output(source: Path, settings: Settings) -> Path:
    """Beside the input, stem + suffix; audio-only mode takes the format's extension."""
    extension = f".{settings.output.format or 'flac'}" if settings.output.mode == "audio" else source.suffix
    return source.with_name(f"{source.stem}{settings.output.suffix}{extension}")


def _free_name(target: Path) -> Path:
    """`target`, or `target` with a UTC time stamp added when the name is taken."""
    if not target.exists() and not target.is_symlink():
        return target
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return target.with_name(f"{target.stem}.{stamp}{target.suffix}")


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
        f"file: {_display_path(path.name)}\nstep: {step}\nreason: {one_line}\ntime: {when}\n",
        encoding="utf-8",
        errors="backslashreplace",
    )
    return target


def _flat_settings(settings: Settings) -> dict[str, Any]:
    return {
        f"{group}.{name}": value
        for group, fields in settings.model_dump(mode="json").items()
        for name, value in fields.items()
    }


def _profile_how(settings: Settings) -> str:
    noise = settings.noise
    mode = noise.resolved_mode(settings.suppression.method)
    return {
        "auto": "auto: noise floor tracked by minimum statistics (no noise-only stretch needed)",
        "head": f"head: the first {noise.head_samples} samples are taken as noise only",
        "segment": f"segment: {noise.start_s} s to {noise.end_s} s of the input are noise only",
        "file": f"file: the separate noise recording `{noise.file}`",
    }[mode]


def _stream_rows(source: Path) -> list[dict[str, Any]]:
    info = media.probe(source)
    rows = []
    for stream in info.streams:
        row = {"index": stream.index, "type": stream.kind, "codec": stream.codec}
        for name in ("sample_rate", "channels", "width", "height", "duration"):
            value = getattr(stream, name, None)
            if value is not None:
                row[name] = value
        rows.append(row)
    return rows


@dataclass
class _FileRun:
    """One file going through the steps: the futures of its steps, their times, the step running.

    The steps are submitted to the flow's task runner with the futures of the
    steps they need as arguments, so that the steps of many files interleave
    (on threads, or across a Dask cluster) while each file's steps keep their order.
    """

    source: Path
    settings: Settings
    output: Path | None = None
    work_dir: Path = Path()
    step: str = "start"
    steps: dict[str, float] = field(default_factory=dict)
    futures: dict[str, PrefectFuture[Any]] = field(default_factory=dict)
    submitted: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)
    progress: Any = None
    error: BaseException | None = None

    @property
    def elapsed(self) -> float:
        return sum(self.steps.values())

    def submit(self, step: str, task: Any, *args: Any, **kwargs: Any) -> PrefectFuture[Any]:
        """Submit `task` as `step` of this file, with its retries, backoff and result storage."""
        self.submitted[step] = time.perf_counter()
        future = _configured(task, self.settings).submit(*args, **kwargs)
        future.add_done_callback(lambda _: self.finished.__setitem__(step, time.perf_counter()))
        self.futures[step] = future
        return future

    def wait(self, step: str) -> Any:
        """The result of `step`, raising its error; the step's time is from its inputs being ready to its end."""
        self.step = step
        try:
            value = self.futures[step].result()
        except ParameterError as error:  # the step refuses this file's audio, or the settings do not fit it
            raise BadInputError(self.source, f"its audio cannot be cleaned: {error}") from error
        done = self.finished.get(step, time.perf_counter())
        ready = max([self.submitted[step], *(self.finished.get(need, 0.0) for need in _NEEDS[step])])
        self.steps[step] = max(0.0, done - ready)
        return value


_NEEDS: dict[str, tuple[str, ...]] = {
    "extract": (),
    "noise": (),
    "profile": ("extract", "noise"),
    "subtract": ("profile",),
    "inverse": ("subtract",),
    "plots": ("inverse",),
    "encode": ("inverse",),
    "deliver": ("encode",),
}


@contextlib.contextmanager
def _timed(run: _FileRun, step: str) -> Iterator[None]:
    """Time work done in the flow itself into ``run.steps``; ``run.step`` names it (for quarantine notes)."""
    run.step = step
    started = time.perf_counter()
    try:
        yield
    finally:
        run.steps[step] = time.perf_counter() - started


def _configured(step: Any, settings: Settings) -> Any:
    runtime = settings.runtime
    return step.with_options(
        retries=runtime.retries,
        retry_delay_seconds=[runtime.retry_delay_s * 2**attempt for attempt in range(max(runtime.retries, 1))],
        result_storage=settings.paths.work.resolve() / "results",
    )


def _write_report(
    run: _FileRun, *, plots_json: Path, audio_wav: Path, profile_npz: Path, cleaned_wav: Path, output: Path
) -> Path:
    plots = json.loads(plots_json.read_text(encoding="utf-8"))
    profile = dsp.NoiseProfile.load(profile_npz)
    details = ", ".join(f"{name}={value}" for name, value in profile.details.items())
    text = report.render_report(
        source=run.source,
        output=output,
        streams=_stream_rows(run.source),
        profile_how=f"{_profile_how(run.settings)}; {profile.sample_rate} Hz, n_fft {profile.n_fft}, "
        f"hop {profile.hop_length}, {profile.channels} channel(s), measured as `{profile.mode}`"
        + (f" ({details})" if details else ""),
        settings=_flat_settings(run.settings),
        step_seconds=run.steps,
        reduction_db=plots["reduction_db"],
        profile_uri=plots["profile_uri"],
        spectrogram_uri=plots["spectrogram_uri"],
        files={
            "work folder": run.work_dir,
            "profile plot": Path(plots["profile_png"]),
            "spectrograms": Path(plots["spectrogram_png"]),
            "audio": audio_wav,
            "noise profile": profile_npz,
            "cleaned audio": cleaned_wav,
        },
    )
    path = run.work_dir / "report.md"
    with media.atomic_output(path) as partial:
        partial.write_text(text, encoding="utf-8")
    key = report_key(run.source)
    create_markdown_artifact(text, key=key, description=f"destatic report of {run.source.name}")
    flow_run = FlowRunContext.get()
    record = {
        "source": str(run.source),
        "output": str(output),
        "work_dir": str(run.work_dir),
        "report": str(path),
        "profile_plot": plots["profile_png"],
        "spectrogram_plot": plots["spectrogram_png"],
        "artifact_key": key,
        "flow_run_id": str(flow_run.flow_run.id) if flow_run and flow_run.flow_run else None,
        "reduction_db": plots["reduction_db"],
        "step_seconds": run.steps,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with media.atomic_output(run.work_dir / LAST_RUN) as partial:
        partial.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return path


# --- the graph of one file: started, continued once its audio is out, finished


def _start_steps(run: _FileRun) -> None:
    """Hash the input (its work folder) and submit the extraction of its audio (and of a noise file)."""
    settings, source = run.settings, run.source
    with _timed(run, "hash"):
        run.work_dir = work_dir_for(source, settings)
    if run.output is None:
        run.output = default_output(source, settings)
    run.output = Path(run.output).absolute()
    get_run_logger().info("%s -> %s (work folder %s)", source.name, run.output, run.work_dir)
    run.submit("extract", tasks.extract_audio, source, run.work_dir)
    if settings.noise.mode == "file":
        assert settings.noise.file is not None
        run.submit("noise", tasks.extract_audio, settings.noise.file.absolute(), run.work_dir)


def _continue_steps(run: _FileRun) -> None:
    """Once the audio is out (its length decides on a progress artifact), submit every later step."""
    settings, source, work_dir = run.settings, run.source, run.work_dir
    audio_wav = run.wait("extract")
    if sf.info(str(audio_wav)).duration >= LONG_FILE_S:
        run.progress = create_progress_artifact(progress=10.0, description=f"destatic: {source.name}")
    tasks.notify_progress(work_dir, 10.0)
    audio, noise_wav = run.futures["extract"], run.futures.get("noise")
    noise_file = settings.noise.file.absolute() if noise_wav is not None and settings.noise.file else None
    profile = run.submit(
        "profile",
        tasks.profile_noise,
        audio,
        work_dir,
        settings.noise,
        method=settings.suppression.method,
        noise_file=noise_file,
        noise_wav=noise_wav,
    )
    gains = run.submit("subtract", tasks.subtract_noise, audio, profile, work_dir, settings.suppression, progress=run.progress)
    cleaned = run.submit("inverse", tasks.inverse_stft, audio, gains, profile, work_dir, progress=run.progress)
    # The plots need only the audio and the profile: drawn while ffmpeg encodes.
    run.submit("plots", tasks.plot_report, audio, profile, cleaned, work_dir)
    assert run.output is not None
    if settings.output.mode == "audio" or source.suffix.lower() in media.AUDIO_SUFFIXES:
        fmt = settings.output.format or run.output.suffix.lower().lstrip(".") or "flac"
        encoded = run.submit("encode", tasks.export_audio, cleaned, work_dir, {"oga": "ogg"}.get(fmt, fmt))
    else:
        encoded = run.submit("encode", tasks.remux, source, cleaned, work_dir)
    run.submit("deliver", tasks.deliver, encoded, run.output)


def _finish_steps(run: _FileRun) -> Path:
    """Wait for the steps in order (the first that failed raises), then write the report."""
    if "noise" in run.futures:
        run.wait("noise")
    for step in ("profile", "subtract", "inverse", "encode"):
        run.wait(step)
    delivered = run.wait("deliver")
    tasks.report_progress(run.progress, run.work_dir, 100.0)
    with _timed(run, "report"):
        _write_report(
            run,
            plots_json=run.futures["plots"].result(),
            audio_wav=run.futures["extract"].result(),
            profile_npz=run.futures["profile"].result(),
            cleaned_wav=run.futures["inverse"].result(),
            output=delivered,
        )
    get_run_logger().info("%s done in %.2f s: %s", run.source.name, run.elapsed, delivered)
    return delivered


def _reason(error: BaseException) -> str:
    """One line saying why a file failed (and, once it is settled, what became of the file)."""
    reason = error.reason if isinstance(error, BadInputError) else " ".join(f"{type(error).__name__}: {error}".split())
    return "; ".join([reason, *getattr(error, "__notes__", ())])


def _blames_the_file(error: BaseException) -> bool:
    """Whether `error` comes back on every run of the file, so that it is quarantined at once.

    Bad input: the file itself, or a step refusing its audio (a 4 kHz rate,
    NaN samples) or finding that the settings do not fit it (a noise segment
    past its end), which :meth:`_FileRun.wait` turns into bad input. Neither
    is retried by a step (:func:`destatic.tasks.is_transient`); any other
    error may not recur.
    """
    return isinstance(error, BadInputError)


def _denoise_one(
    source: Path, settings: Settings, *, output: Path | None, on_failure: Callable[[str, Exception], Any] | None = None
) -> Path:
    """Clean one file through the graph; `on_failure(step, error)` is called before its error is raised."""
    run = _FileRun(source=source, settings=settings, output=output)
    try:
        _start_steps(run)
        _continue_steps(run)
        return _finish_steps(run)
    except Exception as error:
        if on_failure is not None:
            on_failure(run.step, error)
        raise


def _quarantine_bad_input(path: Path, settings: Settings, relative: Path | None) -> Callable[[str, Exception], None]:
    """On failure: move `path` into quarantine if it is to blame, else leave it where it is."""

    def settle(step: str, error: Exception) -> None:
        reason = _reason(error)
        if not _blames_the_file(error):
            get_run_logger().error("%s failed at step %s: %s; left where it is", path.name, step, reason)
        elif path.exists() or path.is_symlink():
            where = quarantine(path, settings.paths.quarantine, relative=relative, step=step, reason=reason)
            get_run_logger().error("%s failed at step %s: %s; moved to %s", path.name, step, reason, where)

    return settle


@flow(name="denoise-file", log_prints=False)
def denoise_file(
    path: Path,
    settings: Settings | None = None,
    *,
    output: Path | None = None,
    relative: Path | None = None,
    quarantine_bad: bool = True,
    claim: Path | None = None,
) -> Path:
    """Clean one file: extract, profile, subtract, inverse STFT, remux or export.

    Parameters
    ----------
    path : Path
        A video or audio file. With `claim`, only its name for the run's
        parameters: the file is the one in the claim folder.
    settings : Settings or None
        None: :func:`~destatic.settings.load_settings`.
    output : Path or None
        Where the result goes; None: :func:`default_output`.
    relative : Path or None
        The input's path under the inbox, kept when it is quarantined.
    quarantine_bad : bool
        Move a bad input (:class:`~destatic.errors.BadInputError`, which a
        step's :class:`~destatic.errors.ParameterError` becomes) into
        ``settings.paths.quarantine`` with ``NAME.error.txt``; False leaves it
        where it is, as is any input that fails for another reason.
    claim : Path or None
        A claim folder of :func:`claim` (``inbox/.processing/<id>``): the run
        then settles the file as the watcher would: the result to the outbox
        under its relative path, the original to ``done/``; bad input to
        quarantine; after another failure the original back to the inbox, or
        to quarantine at the ``watch.max_attempts``-th such failure (see
        :func:`failure_record`); the claim released at the end. Run again
        after a crash, it completes the same file once. `output`, `relative`
        and `quarantine_bad` are then derived.

    Returns
    -------
    Path
        The written output.

    Raises
    ------
    BadInputError
        The input cannot be processed (never retried); the flow run fails with its reason.
    TransientError
        A failure that may not happen again (disk full, ffmpeg killed), once
        its step's retries are spent; the flow run fails with its reason.
    """
    settings = settings or load_settings()
    with media.time_limit(settings.runtime.ffmpeg_timeout_s):
        if claim is not None:
            return _settle_claim(Path(claim).absolute(), settings)
        source = Path(path).absolute()
        on_failure = _quarantine_bad_input(source, settings, relative) if quarantine_bad else None
        return _denoise_one(source, settings, output=output, on_failure=on_failure)


@flow(name="denoise-files", log_prints=False)
def denoise_files(
    paths: list[Path], settings: Settings | None = None, *, outputs: list[Path] | None = None
) -> list[dict[str, Any]]:
    """Clean many files in one flow run, their steps fanned out on the flow's task runner.

    Every file goes through the same cached steps as with :func:`denoise_file`
    (the same graph, the same reports and artifacts); the steps of different
    files run at once, on threads or on the Dask cluster of
    ``settings.runtime`` (see :func:`run_batch`). A file that fails stays
    where it is, and the others go on; the run then ends ``Failed``.

    Parameters
    ----------
    paths : list of Path
        Video or audio files.
    settings : Settings or None
        None: :func:`~destatic.settings.load_settings`.
    outputs : list of Path or None
        One output per input; None: :func:`default_output` of each.

    Returns
    -------
    list of dict
        One row per input, in order: file, status (``done`` or ``failed``),
        output, step (the failing one), reason.
    """
    settings = settings or load_settings()
    if outputs is not None and len(outputs) != len(paths):
        raise ParameterError(f"outputs has {len(outputs)} paths for {len(paths)} inputs; give one per input")
    runs = [
        _FileRun(source=Path(path).absolute(), settings=settings, output=None if outputs is None else outputs[index])
        for index, path in enumerate(paths)
    ]
    written: dict[int, Path] = {}
    with media.time_limit(settings.runtime.ffmpeg_timeout_s):
        for phase in (_start_steps, _continue_steps, _finish_steps):
            for index, run in enumerate(runs):
                if run.error is not None:
                    continue
                try:
                    result = phase(run)
                except Exception as error:  # one bad file does not stop the others
                    run.error = error
                    get_run_logger().error("%s failed at step %s: %s", run.source, run.step, _reason(error))
                else:
                    if isinstance(result, Path):
                        written[index] = result
    rows = [
        {
            "file": str(run.source),
            "status": "failed" if run.error is not None else "done",
            "output": str(written.get(index, "")),
            "step": run.step if run.error is not None else "",
            "reason": _reason(run.error) if run.error is not None else "",
        }
        for index, run in enumerate(runs)
    ]
    failed = [row for row in rows if row["status"] == "failed"]
    if failed:
        return Failed(message=f"{len(failed)} of {len(rows)} file(s) failed, first {failed[0]['file']}: {failed[0]['reason']}", data=rows)
    return rows


def run_batch(paths: list[Path], settings: Settings, *, outputs: list[Path] | None = None) -> list[dict[str, Any]]:
    """Run :func:`denoise_files` on the task runner that ``settings.runtime`` names.

    ``runtime.task_runner="dask"`` fans the steps out over a local Dask
    cluster of ``runtime.dask_workers`` processes (none: one per usable CPU) or over
    the existing cluster at ``runtime.dask_address``.

    Returns
    -------
    list of dict
        The rows of :func:`denoise_files`, whether or not a file failed.
    """
    runner = task_runner_for(settings.runtime)
    state = denoise_files.with_options(task_runner=runner)(paths, settings, outputs=outputs, return_state=True)
    rows = state.result(raise_on_failure=False)
    if isinstance(rows, BaseException):
        raise rows
    return rows


# --- the inbox -------------------------------------------------------------


def _media_suffixes() -> frozenset[str]:
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
    suffixes = _media_suffixes()
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


@dataclass(frozen=True)
class Claim:
    """A file taken from the inbox by one watcher: ``inbox/.processing/<id>/<relative>``."""

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
    (folder / "owner.json").write_text(json.dumps({"host": _HOST, "pid": os.getpid(), "time": time.time()}))
    claimed = folder / "files" / relative
    claimed.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, claimed)
    except FileNotFoundError:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    after = claimed.lstat()
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or time.time() - after.st_mtime < stable_s:
        _unclaim(Claim(claimed, relative, folder))
        return None
    return Claim(claimed, relative, folder)


def _unclaim(taken: Claim) -> None:
    back = taken.inbox / taken.relative
    if taken.path.exists() or taken.path.is_symlink():
        back.parent.mkdir(parents=True, exist_ok=True)
        if back.exists():
            back = _free_name(back)
        os.rename(taken.path, back)
    shutil.rmtree(taken.folder, ignore_errors=True)


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


def _settle_failure(taken: Claim, settings: Settings, *, step: str, error: Exception) -> None:
    """Settle a claimed file whose run failed at `step`; what became of it is added to `error`'s notes.

    Bad input goes to quarantine at once (see :func:`_blames_the_file`). Any
    other failure (transient after its retries, or unexpected) is counted in
    ``inbox/.failures/`` and the file goes back to the inbox untouched, to be
    taken again after ``watch.retry_after_s``; at the
    ``watch.max_attempts``-th failure it goes to quarantine instead, with the
    count and the last reason.
    """
    logger = get_run_logger()
    name, reason = _display_path(taken.relative), _reason(error)
    if not (taken.path.exists() or taken.path.is_symlink()):
        logger.error("%s failed at step %s: %s; the file is gone", name, step, reason)
        return
    record = _record_path(taken)
    watch = settings.watch
    blamed = _blames_the_file(error)
    previous = None if blamed else _read_record(record)
    failures = (previous.failures if previous is not None else 0) + 1
    if blamed or failures >= watch.max_attempts:
        why = reason if blamed else (
            f"failed {failures} times for reasons other than its content (watch.max_attempts={watch.max_attempts}); last: {reason}"
        )
        where = quarantine(taken.path, settings.paths.quarantine, relative=taken.relative, step=step, reason=why)
        with contextlib.suppress(FileNotFoundError):
            record.unlink()
        logger.error("%s failed at step %s: %s; moved to %s", name, step, why, where)
        if not blamed:
            error.add_note(f"moved to quarantine after {failures} failures")
        return
    record.parent.mkdir(parents=True, exist_ok=True)
    entry = FailureRecord(file=name, failures=failures, step=step, reason=reason, time=time.time())
    with media.atomic_output(record) as partial:
        partial.write_text(json.dumps(entry.__dict__), encoding="utf-8")
    _unclaim(taken)
    outcome = f"left in the inbox (failure {failures} of {watch.max_attempts}), taken again after {watch.retry_after_s:g} s"
    logger.error("%s failed at step %s: %s; %s", name, step, reason, outcome)
    error.add_note(outcome)


def _forget_stale_records(inbox: Path) -> None:
    """Delete the failure records of files that have left the inbox, once :data:`STALE_RECORD_S` old."""
    folder = inbox / FAILURES_DIR
    if not folder.is_dir():
        return
    present = set()
    claimed = [taken for entry in _claim_folders(inbox) if (taken := _claimed(entry)) is not None]
    for relative, path in [*((path.relative_to(inbox), path) for path in _walk(inbox)), *((t.relative, t.path) for t in claimed)]:
        with contextlib.suppress(FileNotFoundError):
            present.add(_record_file(inbox, relative, path.lstat()).name)
    for record in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if record.name not in present and time.time() - record.stat().st_mtime > STALE_RECORD_S:
                record.unlink()


def _claim_folders(inbox: Path) -> list[Path]:
    root = inbox / CLAIM_DIR
    return sorted(root.iterdir()) if root.is_dir() else []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_stale_claims(inbox: Path) -> list[Path]:
    """Put back into the inbox the files whose claim nobody will settle.

    A claim handed to a run of the per-file deployment (``flow_run`` in its
    ``owner.json``) is given back once that run is over (crashed, cancelled)
    without having settled it, whatever the host; any other claim once the
    process that made it, on this host, is gone.

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
            if not _run_is_over(owner["flow_run"]):
                continue
        elif owner.get("host") != _HOST or _pid_alive(int(owner.get("pid", 0))):
            continue
        taken = _claimed(folder)
        if taken is not None:
            _unclaim(taken)
            released.append(taken.relative)
        shutil.rmtree(folder, ignore_errors=True)
    return released


def _run_is_over(flow_run_id: str) -> bool:
    """Whether a flow run is in a final state (or unknown to the server)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state
    except ObjectNotFound:
        return True
    return state is not None and state.is_final()


def remove_dead_partials(*roots: Path) -> list[Path]:
    """Delete the temporary files under `roots` left by processes of this host that are gone (kill -9).

    Only names made by :func:`destatic.media.atomic.partial_path` on this host
    are touched, and only when the PID in the name is not running; symbolic
    links are not followed. On a folder shared by several hosts, each one's
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
                owner = partial_owner(name)
                if owner is None or _pid_alive(owner):
                    continue
                path = Path(folder) / name
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed


def _outbox_path(relative: Path, settings: Settings) -> Path:
    target = settings.paths.outbox / relative
    if settings.output.mode == "audio" or relative.suffix.lower() in media.AUDIO_SUFFIXES:
        if settings.output.format:
            target = target.with_suffix(f".{settings.output.format}")
    return target.absolute()


SETTLED = "settled.json"


def _claimed(folder: Path) -> Claim | None:
    """The claim of `folder` as :func:`claim` made it, or None once its file has left."""
    files = folder / "files"
    found = [path for path in _walk(files)] if files.is_dir() else []
    if not found:
        return None
    return Claim(found[0], found[0].relative_to(files), folder)


def _run_parameter(taken: Claim) -> Path:
    """What to pass as a run's ``path``: the claimed file, or the claim folder when its name is not UTF-8 (parameters are JSON)."""
    return taken.path if _utf8(taken.path) else taken.folder


def _settle_claim(folder: Path, settings: Settings) -> Path:
    """Clean the file of a claim folder and settle it; see :func:`denoise_file` (`claim`).

    The claim folder is removed last, after the original is in ``done/`` or
    quarantine: a run killed at any point finds, when run again, either the
    file still claimed (cleaned again, from the cache, and delivered over the
    same output) or ``settled.json`` saying where the output went.
    """
    settled = folder / SETTLED
    taken = _claimed(folder)
    if taken is None:
        if settled.is_file():  # delivered and moved to done/ by an earlier attempt of this run
            output = Path(json.loads(settled.read_text(encoding="utf-8"))["output"])
            shutil.rmtree(folder, ignore_errors=True)
            return output
        raise DestaticError(f"claim {str(folder)!r} holds no file: it was released or settled by another run")
    target = _outbox_path(taken.relative, settings)

    def on_failure(step: str, error: Exception) -> None:
        _settle_failure(taken, settings, step=step, error=error)

    try:
        if taken.path.is_symlink():
            raise BadInputError(taken.path, "is a symbolic link; links are not followed")
        if _utf8(taken.path) and _utf8(target):
            output = _denoise_one(taken.path, settings, output=target, on_failure=on_failure)
        else:
            output = _denoise_alias(taken, target, settings, on_failure=on_failure)
    except Exception as error:  # not on cancellation: the claim is given back once the run is over
        if taken.path.exists() or taken.path.is_symlink():  # never deleted with its claim folder
            on_failure("claim", error)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    with media.atomic_output(settled) as partial:
        partial.write_text(json.dumps({"output": os.fsdecode(output)}), encoding="utf-8")
    with contextlib.suppress(FileNotFoundError):
        _record_path(taken).unlink()
    done = _free_name(settings.paths.done.absolute() / taken.relative)
    done.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(os.fspath(taken.path), done)
    shutil.rmtree(folder, ignore_errors=True)
    return output


def _process_claim(taken: Claim, settings: Settings) -> dict[str, Any]:
    """Clean a claimed file in this process (``watch.dispatch="inline"``): one run of denoise_file."""
    started = time.perf_counter()
    row: dict[str, Any] = {"file": str(taken.relative), "status": "failed", "output": "", "seconds": 0.0, "reason": ""}
    failure: Exception | None = None
    try:
        output = denoise_file(_run_parameter(taken), settings, claim=taken.folder)
    except Exception as error:  # the watcher goes on past any file
        failure = error
    else:
        row.update(status="done", output=str(output))
    finally:
        if taken.path.exists() or taken.path.is_symlink():  # the run ended before settling it
            failure = failure or DestaticError("the run ended without settling the file")
            row.update(status="failed", output="")
            try:
                _settle_failure(taken, settings, step="claim", error=failure)
            except Exception as error:  # quarantine or the inbox's state unwritable: the watcher goes on
                get_run_logger().error("%s could not be settled (%s); put back in the inbox", taken.relative, _reason(error))
                _unclaim(taken)
        shutil.rmtree(taken.folder, ignore_errors=True)
        row["seconds"] = round(time.perf_counter() - started, 2)
    if failure is not None:
        row["reason"] = _reason(failure)
    return row


def _dispatch_claim(taken: Claim, settings: Settings, parameters: dict[str, Any]) -> dict[str, Any]:
    """Start a run of the per-file deployment for a claimed file (``watch.dispatch="deployment"``).

    The claim then belongs to that run (recorded in its ``owner.json``): the
    run settles the file and releases the claim, and :func:`release_stale_claims`
    gives the file back only once the run is over without having done so.
    """
    from prefect.deployments import run_deployment

    started = time.perf_counter()
    row: dict[str, Any] = {"file": str(taken.relative), "status": "failed", "output": "", "seconds": 0.0, "reason": ""}
    try:
        flow_run = run_deployment(
            settings.watch.deployment,
            parameters={"path": str(_run_parameter(taken)), "settings": parameters, "claim": str(taken.folder)},
            timeout=0,
        )
    except Exception as error:
        _unclaim(taken)
        row["reason"] = f"not dispatched, left in the inbox: {_reason(error)}"
    else:
        owner_json = taken.folder / "owner.json"
        owner = json.loads(owner_json.read_text())
        with media.atomic_output(owner_json) as partial:
            partial.write_text(json.dumps({**owner, "flow_run": str(flow_run.id)}))
        row.update(status="dispatched", output=str(_outbox_path(taken.relative, settings)), flow_run=flow_run.name)
    row["seconds"] = round(time.perf_counter() - started, 2)
    return row


def _check_deployment(name: str) -> None:
    """Fail with a clear message when the per-file deployment is not on the server."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(name)
    except ObjectNotFound:
        raise DestaticError(
            f"watch.deployment={name!r} is not a deployment of the Prefect server at {client.api_url}: "
            "create it with `destatic deploy --pool POOL`, or set watch.dispatch='inline'"
        ) from None


def _denoise_alias(
    taken: Claim, target: Path, settings: Settings, *, on_failure: Callable[[str, Exception], Any]
) -> Path:
    """Clean a claimed file whose path is not UTF-8 (Prefect parameters are JSON) through an ASCII alias.

    The steps see a hard link ``<claim folder>/input<suffix>`` and write into
    the claim folder; the result is then moved to `target` under its real name.
    """
    suffix = taken.path.suffix if _utf8(Path(taken.path.suffix)) else ""
    alias = taken.folder / f"input{suffix}"
    if not alias.exists():
        try:
            os.link(taken.path, alias)
        except OSError:
            shutil.copyfile(taken.path, alias)
    out_suffix = target.suffix if _utf8(Path(target.suffix)) else suffix
    staged = _denoise_one(alias, settings, output=taken.folder / f"output{out_suffix}", on_failure=on_failure)
    target.parent.mkdir(parents=True, exist_ok=True)
    with media.atomic_output(target) as partial:
        shutil.move(os.fspath(staged), partial)
    return target


def _utf8(path: Path) -> bool:
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@flow(name="watch-inbox", log_prints=False)
def watch_inbox(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Scan the inbox once: claim every stable file, have it cleaned, settled in the outbox and ``done/``.

    With ``watch.dispatch="inline"`` the files are cleaned here, one run of
    :func:`denoise_file` each (``watch.concurrency`` at once). With
    ``"deployment"`` each claimed file is handed to a run of the per-file
    deployment ``watch.deployment``, for a worker to take, and the scan ends
    without waiting. Either way the result goes to the outbox under the same
    relative path, and the others go on past a file that fails: bad input is
    quarantined with its reason; after any other failure the file is left in
    the inbox, not taken again for ``watch.retry_after_s``, and quarantined
    at its ``watch.max_attempts``-th failure. A table artifact lists what
    this scan did.

    Returns
    -------
    list of dict
        One row per file taken: file, status (done, failed, dispatched),
        output, seconds, reason (and flow_run when dispatched).
    """
    settings = settings or load_settings()
    logger = get_run_logger()
    inbox = settings.paths.inbox.absolute()
    if not inbox.is_dir():
        raise DestaticError(f"inbox {str(inbox)!r} is not a folder")
    dispatch = settings.watch.dispatch == "deployment"
    if dispatch:
        _check_deployment(settings.watch.deployment)
    for relative in release_stale_claims(inbox):
        logger.warning("put back %s, claimed by a process or run that is gone", relative)
    for path in remove_dead_partials(settings.paths.outbox.absolute(), settings.paths.work.absolute()):
        logger.warning("deleted %s, left half-written by a process that is gone", path)
    _forget_stale_records(inbox)
    ready, waiting = [], []
    for relative in find_ready(inbox, stable_s=settings.watch.stable_s):
        record = failure_record(inbox, relative)
        waits = record is not None and record.waits(retry_after_s=settings.watch.retry_after_s)
        (waiting if waits else ready).append(relative)
    if waiting:
        logger.info("%d file(s) left alone until watch.retry_after_s has passed since they failed: %s",
                    len(waiting), ", ".join(_display_path(relative) for relative in waiting[:10]))
    claims = [
        taken for relative in ready if (taken := claim(inbox, relative, stable_s=settings.watch.stable_s)) is not None
    ]
    logger.info("%d file(s) taken from %s", len(claims), inbox)
    if dispatch:
        parameters = settings.to_parameters()
        rows = [_dispatch_claim(taken, settings, parameters) for taken in claims]
    elif settings.watch.concurrency == 1 or len(claims) <= 1:
        rows = [_process_claim(taken, settings) for taken in claims]
    else:
        with ThreadPoolExecutor(settings.watch.concurrency) as pool:
            futures = [pool.submit(contextvars.copy_context().run, _process_claim, taken, settings) for taken in claims]
            rows = [future.result() for future in futures]
    if rows:
        create_table_artifact(rows, key="destatic-watch", description=f"destatic watch of {inbox}")
    return rows


def serve_watcher(settings: Settings) -> None:
    """Run :func:`watch_inbox` every ``settings.watch.interval_s`` seconds (blocks).

    With a Prefect server (``PREFECT_API_URL`` set) the flow is served as the
    ``watch-inbox/destatic-watch`` deployment on an interval schedule, visible
    and controllable in the UI; with ``watch.dispatch="deployment"`` its scans
    hand the files to the workers of the per-file deployment. Prefect's
    embedded server does not run the scheduler, so without one the scans are
    started by a plain loop here.

    Raises
    ------
    DestaticError
        ``watch.dispatch="deployment"`` without a server, or without the per-file deployment on it.
    """
    from prefect import serve
    from prefect.settings import PREFECT_API_URL

    if settings.watch.dispatch == "deployment":
        if not PREFECT_API_URL.value():
            raise DestaticError("watch.dispatch='deployment' needs a Prefect server with workers: set PREFECT_API_URL")
        _check_deployment(settings.watch.deployment)
    if PREFECT_API_URL.value():
        serve(watcher_deployment(settings))
        return
    while True:
        started = time.monotonic()
        watch_inbox(settings, return_state=True)
        time.sleep(max(0.0, settings.watch.interval_s - (time.monotonic() - started)))


def watcher_deployment(settings: Settings, *, name: str = "destatic-watch", module_entrypoint: bool = False) -> Any:
    """The scheduled watcher as a deployment: every ``watch.interval_s`` seconds, one scan at a time.

    Parameters
    ----------
    settings : Settings
        Given to every scan, its folders made absolute.
    name : str
        Deployment name (``watch-inbox/<name>``).
    module_entrypoint : bool
        Load the flow as ``destatic.flows.watch_inbox`` from the installed
        package (for a work pool) instead of from this file.

    Returns
    -------
    prefect.deployments.runner.RunnerDeployment
    """
    from prefect.types.entrypoint import EntrypointType

    return watch_inbox.to_deployment(
        name=name,
        interval=settings.watch.interval_s,
        parameters={"settings": settings.to_parameters()},
        concurrency_limit=1,
        entrypoint_type=EntrypointType.MODULE_PATH if module_entrypoint else EntrypointType.FILE_PATH,
    )


def deploy_to_pool(settings: Settings, *, pool: str, name: str = "destatic") -> dict[str, str]:
    """Deploy the per-file flow and the scheduled watcher to a work pool, the watcher dispatching to the other.

    Creates (or updates) ``denoise-file/<name>`` and ``watch-inbox/<name>-watch``
    on the server at ``PREFECT_API_URL``. Both load the flows from the
    installed ``destatic`` package (``destatic.flows``), so every worker needs
    destatic installed, and the folders of `settings` on the same mount.

    Parameters
    ----------
    settings : Settings
        The watcher's settings; its ``watch.dispatch`` and ``watch.deployment``
        are set here to hand files to ``denoise-file/<name>``.
    pool : str
        An existing work pool (``prefect work-pool create POOL --type process``).
    name : str
        Name of the per-file deployment.

    Returns
    -------
    dict
        Deployment name (``FLOW/DEPLOYMENT``) to its id.

    Raises
    ------
    DestaticError
        No ``PREFECT_API_URL``, or the pool does not exist.
    """
    from prefect import deploy, get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL
    from prefect.types.entrypoint import EntrypointType

    if not PREFECT_API_URL.value():
        raise DestaticError("deploying needs a Prefect server: set PREFECT_API_URL")
    try:
        with get_client(sync_client=True) as client:
            client.read_work_pool(pool)
    except ObjectNotFound:
        raise DestaticError(f"work pool {pool!r} does not exist: prefect work-pool create {pool} --type process") from None
    per_file = f"denoise-file/{name}"
    watch = settings.watch.model_copy(update={"dispatch": "deployment", "deployment": per_file})
    dispatching = settings.model_copy(update={"watch": watch})
    deployments = [
        denoise_file.to_deployment(name=name, entrypoint_type=EntrypointType.MODULE_PATH),
        watcher_deployment(dispatching, name=f"{name}-watch", module_entrypoint=True),
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        ids = deploy(*deployments, work_pool_name=pool, build=False, push=False, print_next_steps_message=False, ignore_warnings=True)
    return dict(zip((per_file, f"watch-inbox/{name}-watch"), (str(deployment_id) for deployment_id in ids)))
