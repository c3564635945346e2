"""Prefect flows: clean one file, and watch an inbox folder.

The flows only order the steps of :mod:`destatic.tasks` and move files
between the inbox, its claim folder, the outbox, ``done/`` and quarantine.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import soundfile as sf
from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.context import FlowRunContext

from destatic import dsp, media, report, tasks
from destatic.errors import BadInputError, DestaticError, _display_path
from destatic.media.atomic import partial_owner
from destatic.settings import Settings, load_settings

__all__ = [
    "CLAIM_DIR",
    "LONG_FILE_S",
    "Claim",
    "claim",
    "default_output",
    "denoise_file",
    "find_ready",
    "quarantine",
    "release_stale_claims",
    "report_key",
    "serve_watcher",
    "watch_inbox",
    "work_dir_for",
]

CLAIM_DIR = ".processing"
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
class _Run:
    """What one run of denoise_file did, for its report."""

    source: Path
    work_dir: Path
    settings: Settings
    steps: dict[str, float]
    step: str = "start"

    @property
    def elapsed(self) -> float:
        return sum(self.steps.values())


@contextlib.contextmanager
def _timed(run: _Run, step: str) -> Iterator[None]:
    """Time a step into ``run.steps``; ``run.step`` names the step running (for quarantine notes)."""
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
    run: _Run, *, plots_json: Path, audio_wav: Path, profile_npz: Path, cleaned_wav: Path, output: Path
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


@flow(name="denoise-file", log_prints=False)
def denoise_file(
    path: Path,
    settings: Settings | None = None,
    *,
    output: Path | None = None,
    relative: Path | None = None,
    quarantine_bad: bool = True,
) -> Path:
    """Clean one file: extract, profile, subtract, inverse STFT, remux or export.

    Parameters
    ----------
    path : Path
        A video or audio file.
    settings : Settings or None
        None: :func:`~destatic.settings.load_settings`.
    output : Path or None
        Where the result goes; None: :func:`default_output`.
    relative : Path or None
        The input's path under the inbox, kept when it is quarantined.
    quarantine_bad : bool
        Move an input that fails into ``settings.paths.quarantine`` with
        ``NAME.error.txt``; False leaves it where it is.

    Returns
    -------
    Path
        The written output.

    Raises
    ------
    BadInputError
        The input cannot be processed (never retried); the flow run fails with its reason.
    """
    settings = settings or load_settings()
    source = Path(path).absolute()
    run = _Run(source=source, work_dir=settings.paths.work, settings=settings, steps={})
    try:
        return _denoise(run, output)
    except Exception as error:
        if quarantine_bad and source.exists():
            reason = error.reason if isinstance(error, BadInputError) else f"{type(error).__name__}: {error}"
            where = quarantine(source, settings.paths.quarantine, relative=relative, step=run.step, reason=reason)
            get_run_logger().error("%s failed at step %s: %s; moved to %s", source.name, run.step, reason, where)
        raise


def _denoise(run: _Run, output: Path | None) -> Path:
    settings, source = run.settings, run.source
    logger = get_run_logger()
    with _timed(run, "hash"):
        run.work_dir = work_dir_for(source, settings)
    output = Path(output).absolute() if output is not None else default_output(source, settings)
    logger.info("%s -> %s (work folder %s)", source.name, output, run.work_dir)

    with _timed(run, "extract"):
        audio_wav = _configured(tasks.extract_audio, settings)(source, run.work_dir)
    progress = None
    if sf.info(str(audio_wav)).duration >= LONG_FILE_S:
        progress = create_progress_artifact(progress=10.0, description=f"destatic: {source.name}")

    noise_file = noise_wav = None
    with _timed(run, "profile"):
        if settings.noise.mode == "file":
            assert settings.noise.file is not None
            noise_file = settings.noise.file.absolute()
            noise_wav = _configured(tasks.extract_audio, settings)(noise_file, run.work_dir)
        profile_npz = _configured(tasks.profile_noise, settings)(
            audio_wav,
            run.work_dir,
            settings.noise,
            method=settings.suppression.method,
            noise_file=noise_file,
            noise_wav=noise_wav,
        )
    with _timed(run, "subtract"):
        gains_npy = _configured(tasks.subtract_noise, settings)(
            audio_wav, profile_npz, run.work_dir, settings.suppression, progress=progress
        )
    with _timed(run, "inverse"):
        cleaned_wav = _configured(tasks.inverse_stft, settings)(
            audio_wav, gains_npy, profile_npz, run.work_dir, progress=progress
        )
    # The plots need only the audio and the profile: drawn while ffmpeg encodes.
    plots = _configured(tasks.plot_report, settings).submit(audio_wav, profile_npz, cleaned_wav, run.work_dir)
    with _timed(run, "encode"):
        audio_only = settings.output.mode == "audio" or source.suffix.lower() in media.AUDIO_SUFFIXES
        if audio_only:
            fmt = settings.output.format or output.suffix.lower().lstrip(".") or "flac"
            fmt = {"oga": "ogg"}.get(fmt, fmt)
            artifact = _configured(tasks.export_audio, settings)(cleaned_wav, run.work_dir, fmt)
        else:
            artifact = _configured(tasks.remux, settings)(source, cleaned_wav, run.work_dir)
    with _timed(run, "deliver"):
        delivered = _configured(tasks.deliver, settings)(artifact, output)
    if progress is not None:
        update_progress_artifact(progress, progress=100.0)
    with _timed(run, "report"):
        _write_report(run, plots_json=plots.result(), audio_wav=audio_wav, profile_npz=profile_npz, cleaned_wav=cleaned_wav, output=delivered)
    logger.info("%s done in %.2f s: %s", source.name, run.elapsed, delivered)
    return delivered


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
        _unclaim(Claim(claimed, relative, folder), inbox)
        return None
    return Claim(claimed, relative, folder)


def _unclaim(taken: Claim, inbox: Path) -> None:
    back = inbox / taken.relative
    if taken.path.exists() or taken.path.is_symlink():
        back.parent.mkdir(parents=True, exist_ok=True)
        if back.exists():
            back = _free_name(back)
        os.rename(taken.path, back)
    shutil.rmtree(taken.folder, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_stale_claims(inbox: Path) -> list[Path]:
    """Put back into the inbox the files claimed by a dead process on this host.

    Returns
    -------
    list of Path
        The relative paths put back.
    """
    released = []
    root = inbox / CLAIM_DIR
    if not root.is_dir():
        return released
    for folder in sorted(root.iterdir()):
        try:
            owner = json.loads((folder / "owner.json").read_text())
        except (OSError, ValueError):
            continue
        if owner.get("host") != _HOST or _pid_alive(int(owner.get("pid", 0))):
            continue
        files = folder / "files"
        for path in list(_walk(files)) if files.is_dir() else []:
            _unclaim(Claim(path, path.relative_to(files), folder), inbox)
            released.append(path.relative_to(files))
        shutil.rmtree(folder, ignore_errors=True)
    return released


def remove_dead_partials(*roots: Path) -> list[Path]:
    """Delete the temporary files under `roots` left by processes of this host that are gone (kill -9).

    Only names made by :func:`destatic.media.atomic.partial_path` are touched,
    and only when the PID in the name is not running; symbolic links are not
    followed. The folders must be local to this host (the PID is).

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


def _process_claim(taken: Claim, settings: Settings) -> dict[str, Any]:
    started = time.perf_counter()
    row: dict[str, Any] = {"file": str(taken.relative), "status": "failed", "output": "", "seconds": 0.0, "reason": ""}
    try:
        if taken.path.is_symlink():
            row["reason"] = "is a symbolic link; links are not followed"
            return row
        target = _outbox_path(taken.relative, settings)
        if _utf8(taken.path) and _utf8(target):
            output = denoise_file(taken.path, settings, output=target, relative=taken.relative)
        else:
            output = _denoise_alias(taken, target, settings)
    except BadInputError as error:
        row["reason"] = error.reason
    except Exception as error:  # the watcher goes on past any file
        row["reason"] = f"{type(error).__name__}: {error}"
    else:
        done = _free_name(settings.paths.done.absolute() / taken.relative)
        done.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(os.fspath(taken.path), done)
        row.update(status="done", output=str(output))
    finally:
        if taken.path.exists() or taken.path.is_symlink():  # never deleted with its claim folder
            reason = row["reason"] or "not processed"
            quarantine(taken.path, settings.paths.quarantine, relative=taken.relative, step="claim", reason=reason)
            row["reason"] = reason
        shutil.rmtree(taken.folder, ignore_errors=True)
        row["seconds"] = round(time.perf_counter() - started, 2)
    return row


def _denoise_alias(taken: Claim, target: Path, settings: Settings) -> Path:
    """Clean a claimed file whose path is not UTF-8 (Prefect parameters are JSON) through an ASCII alias.

    The flow sees a hard link ``<claim folder>/input<suffix>`` and writes into
    the claim folder; the result is then moved to `target` under its real name.
    A failure leaves the original in the claim folder for the caller to quarantine.
    """
    suffix = taken.path.suffix if _utf8(Path(taken.path.suffix)) else ""
    alias = taken.folder / f"input{suffix}"
    try:
        os.link(taken.path, alias)
    except OSError:
        shutil.copyfile(taken.path, alias)
    out_suffix = target.suffix if _utf8(Path(target.suffix)) else suffix
    staged = denoise_file(alias, settings, output=taken.folder / f"output{out_suffix}", quarantine_bad=False)
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
    """Scan the inbox once: claim every stable file, clean it, move it to ``done/``.

    Results go to the outbox under the same relative path. A file that fails is
    quarantined with its reason and the scan goes on. A table artifact lists
    what this scan did.

    Returns
    -------
    list of dict
        One row per file taken: file, status, output, seconds, reason.
    """
    settings = settings or load_settings()
    logger = get_run_logger()
    inbox = settings.paths.inbox.absolute()
    if not inbox.is_dir():
        raise DestaticError(f"inbox {str(inbox)!r} is not a folder")
    for relative in release_stale_claims(inbox):
        logger.warning("put back %s, claimed by a process that is gone", relative)
    for path in remove_dead_partials(settings.paths.outbox.absolute(), settings.paths.work.absolute()):
        logger.warning("deleted %s, left half-written by a process that is gone", path)
    claims = [
        taken
        for relative in find_ready(inbox, stable_s=settings.watch.stable_s)
        if (taken := claim(inbox, relative, stable_s=settings.watch.stable_s)) is not None
    ]
    logger.info("%d file(s) taken from %s", len(claims), inbox)
    if settings.watch.concurrency == 1 or len(claims) <= 1:
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
    and controllable in the UI. Prefect's embedded server does not run the
    scheduler, so without one the scans are started by a plain loop here.
    """
    from prefect import serve
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        deployment = watch_inbox.to_deployment(
            name="destatic-watch",
            interval=settings.watch.interval_s,
            parameters={"settings": settings.model_dump(mode="json")},
            concurrency_limit=1,
        )
        serve(deployment)
        return
    while True:
        started = time.monotonic()
        watch_inbox(settings, return_state=True)
        time.sleep(max(0.0, settings.watch.interval_s - (time.monotonic() - started)))
