"""Prefect tasks: one thin task per step of :mod:`destatic.steps`, with its cache policy and retries.

Every step writes one artifact into the file's work folder and returns a
small record naming it; arrays never travel through Prefect results.
Artifacts are named by their cache key (``subtract-<key>.npy``), so a key
always names the same bytes: a downstream key uses the upstream record's
*name* instead of re-reading its bytes, while the files that come from
outside (the input, a noise recording) are hashed by content.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prefect import Task, task
from prefect.artifacts import update_progress_artifact
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.client.schemas.objects import TaskRun
from prefect.results import get_result_store
from prefect.states import State
from prefect.transactions import get_transaction

from destatic import media, outage, steps
from destatic.cache import artifact_path, step_key
from destatic.errors import TransientError
from destatic.dsp.options import ProfileRequest, SuppressionOptions

__all__ = [
    "StepCache",
    "deliver",
    "export_audio",
    "extract_audio",
    "inverse_stft",
    "is_transient",
    "level_loudness",
    "notify_progress",
    "plot_report",
    "profile_noise",
    "progress_listener",
    "remux",
    "report_progress",
    "residue",
    "subtract_noise",
]

R = TypeVar("R")
PROGRESS_EVERY_S = 2.0
LISTENER_EVERY_S = 0.2


@dataclass
class StepCache(CachePolicy):
    """Cache policy of a step: its key from content, refused when the artifact is gone.

    The key is :func:`step_key` of the task's arguments. When a cache record
    exists but the artifact named by the key is missing (deleted, or a work
    folder wiped), no key is returned, so the step runs again instead of
    handing back a record of nothing.
    """

    step: str = ""
    suffix: str = ""
    suffix_from: str | None = None
    content: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ("progress", "isolated")

    def artifact(self, inputs: Mapping[str, Any], key: str | None = None) -> Path:
        """Where the step writes its artifact for these inputs: ``<work_dir>/<step>-<key><suffix>``."""
        if self.suffix_from is None:
            suffix = self.suffix
        else:
            value = inputs[self.suffix_from]
            suffix = value.suffix if isinstance(value, Path) else f".{value}"
        return artifact_path(self.step, inputs, suffix, content=self.content, ignore=self.ignore, key=key)

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        key = step_key(self.step, inputs, content=self.content, ignore=self.ignore)
        if self.artifact(inputs, key).is_file():
            return key
        store = getattr(task_ctx, "result_store", None) or get_result_store()
        # A record without its artifact: run uncached; rewriting the artifact
        # (same key, same name, same bytes) makes the old record true again.
        return None if store.exists(key) else key

    def target(self, inputs: Mapping[str, Any]) -> Path:
        """:meth:`artifact` inside a task run: the key its transaction was opened with, computed only if it has none."""
        transaction = get_transaction()
        return self.artifact(inputs, transaction.key if transaction is not None else None)


def is_transient(task: Any, task_run: TaskRun, state: State) -> bool:
    """Retry condition: retry a step only after a :class:`TransientError`."""
    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        try:
            error = state.result(raise_on_failure=False)
        except Exception as raised:  # a result that cannot be read is not worth a retry
            error = raised
    return isinstance(error, TransientError)


ProgressListener = Callable[[Path, float], None]
progress_listener: ContextVar[ProgressListener | None] = ContextVar("destatic_progress_listener", default=None)
"""Called with (work folder, percent) as a file's steps advance, in this process (the CLI's progress bars).

Set it around a flow run; task threads inherit it. Tasks run elsewhere (Dask) do not report here.
"""


def notify_progress(work_dir: Path, percent: float) -> None:
    """Tell this process's progress listener, if there is one, how far the file in `work_dir` is."""
    listener = progress_listener.get()
    if listener is not None:
        listener(Path(work_dir), percent)


def report_progress(artifact: Any, work_dir: Path, percent: float) -> None:
    """Move a file's progress artifact (when it has one) and this process's listener."""
    if artifact is not None:
        with outage.best_effort("a progress artifact"):
            update_progress_artifact(artifact, progress=round(percent, 1))
    notify_progress(work_dir, percent)


class _Progress:
    """Moves a file's progress from `start` to `start + span` percent as a step reports (done, total):
    the artifact at most every PROGRESS_EVERY_S, the listener at most every LISTENER_EVERY_S."""

    def __init__(self, artifact: Any, work_dir: Path, *, start: float, span: float) -> None:
        self.artifact, self.work_dir, self.start, self.span = artifact, work_dir, start, span
        self.last = self.last_told = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        total = max(total, 1)
        now, finished = time.monotonic(), done >= total
        percent = self.start + self.span * min(done, total) / total
        if self.artifact is not None and (now - self.last >= PROGRESS_EVERY_S or finished):
            with outage.best_effort("a progress artifact"):
                update_progress_artifact(self.artifact, progress=round(percent, 1))
            self.last = now
        if now - self.last_told >= LISTENER_EVERY_S or finished:
            notify_progress(self.work_dir, percent)
            self.last_told = now


def _run(step: Callable[..., Any], *args: Any, isolated: bool, child: str = "steps", **kwargs: Any) -> Any:
    """`step` called here, or (`isolated`) in a `child` process without Prefect (:mod:`destatic.steps.isolated`)."""
    return steps.isolated.call(step, *args, child=child, **kwargs) if isolated else step(*args, **kwargs)


_EXTRACT = StepCache(step="extract", suffix=steps.extract.SUFFIX, content=steps.extract.BY_CONTENT)
_PROFILE = StepCache(step="profile", suffix=steps.profile.SUFFIX, content=steps.profile.BY_CONTENT)
_SUBTRACT = StepCache(step="subtract", suffix=".npy")
_INVERSE = StepCache(step="inverse", suffix=".wav")
_RESIDUE = StepCache(step="residue", suffix=".wav")
_LOUDNESS = StepCache(step="loudness", suffix=".wav")
_REMUX = StepCache(step="remux", suffix_from="source", content=("source",))
_EXPORT = StepCache(step="export", suffix_from="format")
_PLOTS = StepCache(step="plots", suffix=".json", ignore=("progress", "isolated", "source"))


def _step_task(name: str, policy: StepCache) -> Callable[[Callable[..., R]], Task[..., R]]:
    """A step's cached, retried task from `body`, which takes the path of its artifact as ``target``.

    The task's parameters are `body`'s without ``target``. They are what
    Prefect binds and :class:`StepCache` keys, and the same arguments, bound
    to the same signature, name the target: no task lists its key's inputs.
    """

    def decorate(body: Callable[..., R]) -> Task[..., R]:
        signature = inspect.signature(body)
        parameters = signature.replace(parameters=[p for p in signature.parameters.values() if p.name != "target"])

        @functools.wraps(body)
        def step(*args: Any, **kwargs: Any) -> R:
            bound = parameters.bind(*args, **kwargs)
            bound.apply_defaults()
            return body(*args, target=policy.target(bound.arguments), **kwargs)

        step.__signature__ = parameters  # type: ignore[attr-defined]
        return task(name=name, cache_policy=policy, retry_condition_fn=is_transient, persist_result=True)(step)

    return decorate


@_step_task("extract_audio", _EXTRACT)
def extract_audio(source: Path, work_dir: Path, *, stream: int | None = None, target: Path) -> steps.ExtractedAudio:
    """Extract: decode one audio stream of `source` to ``extract-<key>.wav`` (float32, native rate and channels)."""
    return steps.extract.run(source, target, stream=stream)


@_step_task("profile_noise", _PROFILE)
def profile_noise(
    audio: steps.ExtractedAudio,
    work_dir: Path,
    request: ProfileRequest,
    *,
    method: str | None = None,
    noise_file: Path | None = None,
    noise_audio: steps.ExtractedAudio | None = None,
    profile_file: Path | None = None,
    isolated: bool = True,
    target: Path,
) -> steps.ProfiledNoise:
    """Profile: measure the noise power per channel and bin (or take a saved profile) into ``profile-<key>.npz``.

    A profile begun ahead for this target (:func:`destatic.steps.warming.start_ahead`) is taken instead.
    """
    return steps.ahead.taken("profile", target) or _run(
        steps.profile.run, audio, target, request, method=method, noise_audio=noise_audio, noise_file=noise_file,
        profile_file=profile_file, isolated=isolated,
    )


@_step_task("subtract_noise", _SUBTRACT)
def subtract_noise(
    audio: steps.ExtractedAudio,
    noise: steps.ProfiledNoise,
    work_dir: Path,
    method: str | None,
    options: SuppressionOptions,
    *,
    progress: Any = None,
    isolated: bool = True,
    target: Path,
) -> steps.Gains:
    """Subtract: the suppression gain of every bin of every frame, into ``subtract-<key>.npy``."""
    on_progress = _Progress(progress, work_dir, start=20, span=40)
    return _run(steps.subtract.run, audio, noise, target, method, options, on_progress=on_progress, isolated=isolated)


@_step_task("inverse_stft", _INVERSE)
def inverse_stft(
    audio: steps.ExtractedAudio,
    gains: steps.Gains,
    noise: steps.ProfiledNoise,
    work_dir: Path,
    *,
    progress: Any = None,
    isolated: bool = True,
    target: Path,
) -> steps.AudioFile:
    """Inverse STFT: the gains applied and the frames overlap-added back, into ``inverse-<key>.wav``."""
    on_progress = _Progress(progress, work_dir, start=60, span=30)
    return _run(steps.inverse.run, audio, gains, noise, target, on_progress=on_progress, isolated=isolated)


@_step_task("residue", _RESIDUE)
def residue(
    audio: steps.ExtractedAudio, cleaned: steps.AudioFile, work_dir: Path, *, isolated: bool = True, target: Path
) -> steps.AudioFile:
    """Residue: what was taken out, the audio minus the cleaned audio, into ``residue-<key>.wav``."""
    return _run(steps.residue.run, audio, cleaned, target, isolated=isolated)


@_step_task("level_loudness", _LOUDNESS)
def level_loudness(
    audio: steps.ExtractedAudio,
    cleaned: steps.AudioFile,
    work_dir: Path,
    target_lufs: float,
    ceiling_dbtp: float,
    *,
    isolated: bool = True,
    target: Path,
) -> steps.Leveled:
    """Loudness: the cleaned audio brought to `target_lufs` under a true-peak ceiling, into ``loudness-<key>.wav``."""
    return _run(steps.loudness.run, audio, cleaned, target, target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp, isolated=isolated)


@_step_task("remux", _REMUX)
def remux(source: Path, audio: steps.ExtractedAudio, cleaned: steps.AudioFile, work_dir: Path, *, target: Path) -> steps.Encoded:
    """Remux: `source`'s container again with the cleaned audio, the video copied bit for bit."""
    return steps.remux.run(source, audio, cleaned, target)


@_step_task("export_audio", _EXPORT)
def export_audio(cleaned: steps.AudioFile, work_dir: Path, format: media.AudioFormat, *, target: Path) -> steps.Encoded:
    """Export: the cleaned audio alone, as `format` (wav, flac, mp3, m4a, ogg, opus)."""
    return steps.export.run(cleaned, target, format)


@_step_task("plot_report", _PLOTS)
def plot_report(
    audio: steps.ExtractedAudio,
    noise: steps.ProfiledNoise,
    cleaned: steps.AudioFile,
    work_dir: Path,
    *,
    previews: bool = True,
    source: Path | None = None,
    isolated: bool = True,
    target: Path,
) -> steps.Plots:
    """Report: plots, the estimated reduction, the excerpt to listen to and a video's previews (``plots-<key>.json``).

    `source` (where the input is now, for the previews) is not in the key: the extract record names its content.
    """
    return _run(steps.report.run, audio, noise, cleaned, target, previews=previews, source=source, isolated=isolated, child="report")


@task(name="deliver", cache_policy=NO_CACHE, retry_condition_fn=is_transient)
def deliver(encoded: steps.Encoded, output: Path) -> Path:
    """Deliver: copy the finished output to where the user wants it, atomically."""
    return steps.deliver.run(encoded, output)
