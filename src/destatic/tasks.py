"""Prefect tasks: one small step each, calling the DSP core or the media layer.

Every step writes one artifact into the file's work folder and returns its
path; arrays never travel through Prefect results. Artifacts are named by
their cache key (``subtract-<key>.npy``), so a key always names the same
bytes: a downstream key can use the upstream artifact's *name* instead of
re-reading its bytes, while the files that come from outside (the input, a
noise recording) are hashed by content.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from prefect import task
from prefect.artifacts import update_progress_artifact
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.client.schemas.objects import TaskRun
from prefect.results import get_result_store
from prefect.states import State
from pydantic import BaseModel

from destatic import __version__, dsp, media, report
from destatic._digest import file_digest
from destatic.errors import BadInputError, TransientError
from destatic.settings import NoiseSettings, SuppressionSettings

__all__ = [
    "STEP_VERSIONS",
    "StepCache",
    "artifact_path",
    "at_lowest_priority",
    "deliver",
    "estimate_file_profile",
    "export_audio",
    "extract_audio",
    "file_digest",
    "inverse_stft",
    "is_transient",
    "notify_progress",
    "plot_report",
    "profile_noise",
    "progress_listener",
    "remux",
    "report_progress",
    "step_key",
    "subtract_noise",
]

# Bump a step's version when its code changes what it writes: old cache entries
# then stop matching.
STEP_VERSIONS: dict[str, str] = {
    "extract": "1",
    "profile": "2",
    "subtract": "4",
    "inverse": "3",
    "remux": "1",
    "export": "1",
    "plots": "2",
}
KEY_CHARS = 20
READ_BLOCK = 1 << 16
PROGRESS_EVERY_S = 2.0
LISTENER_EVERY_S = 0.2

def _key_part(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return json.loads(value.model_dump_json())
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
        A key of :data:`STEP_VERSIONS`.
    inputs : mapping
        The task's arguments by name.
    content : tuple of str
        Arguments naming files from outside the work folder: hashed by their bytes.
        Every other argument counts by value (paths by name).
    ignore : tuple of str
        Arguments that do not change the result (progress handles).

    Returns
    -------
    str
        Hex digest, :data:`KEY_CHARS` characters.
    """
    parts: dict[str, Any] = {"step": step, "version": STEP_VERSIONS[step], "destatic": __version__}
    for name in sorted(inputs):
        if name in ignore:
            continue
        value = inputs[name]
        parts[name] = file_digest(Path(value)) if name in content and value is not None else _key_part(value)
    blob = json.dumps(parts, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:KEY_CHARS]


def artifact_path(work_dir: Path, step: str, key: str, suffix: str) -> Path:
    """Where step `step` with cache key `key` writes its artifact."""
    return Path(work_dir) / f"{step}-{key}{suffix}"


@dataclass
class StepCache(CachePolicy):
    """Cache policy of a step: its key from content, refused when the artifact is gone.

    The key is :func:`step_key` of the task's arguments. When a cache record
    exists but the artifact named by the key is missing (deleted, or a work
    folder wiped), no key is returned, so the step runs again instead of
    handing back a path to nothing.
    """

    step: str = ""
    suffix: str = ""
    suffix_from: str | None = None
    content: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ("progress",)

    def artifact_suffix(self, inputs: Mapping[str, Any]) -> str:
        """The artifact's file suffix: fixed, or taken from an argument."""
        if self.suffix_from is None:
            return self.suffix
        value = inputs[self.suffix_from]
        return Path(value).suffix if isinstance(value, Path) else f".{value}"

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        key = step_key(self.step, inputs, content=self.content, ignore=self.ignore)
        if artifact_path(inputs["work_dir"], self.step, key, self.artifact_suffix(inputs)).is_file():
            return key
        store = getattr(task_ctx, "result_store", None) or get_result_store()
        # A record without its artifact: run uncached; rewriting the artifact
        # (same key, same name, same bytes) makes the old record true again.
        return None if store.exists(key) else key


def is_transient(task: Any, task_run: TaskRun, state: State) -> bool:
    """Retry condition: retry a step only after a :class:`TransientError`."""
    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        try:
            error = state.result(raise_on_failure=False)
        except Exception as raised:  # a result that cannot be read is not worth a retry
            error = raised
    return isinstance(error, TransientError)


def _target(policy: StepCache, work_dir: Path, inputs: dict[str, Any]) -> Path:
    key = step_key(policy.step, inputs, content=policy.content, ignore=policy.ignore)
    target = artifact_path(work_dir, policy.step, key, policy.artifact_suffix(inputs))
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


_EXTRACT = StepCache(step="extract", suffix=".wav", content=("source",))
_PROFILE = StepCache(step="profile", suffix=".npz", content=("noise_file",))
_SUBTRACT = StepCache(step="subtract", suffix=".npy")
_INVERSE = StepCache(step="inverse", suffix=".wav")
_REMUX = StepCache(step="remux", suffix_from="source", content=("source",))
_EXPORT = StepCache(step="export", suffix_from="format")
_PLOTS = StepCache(step="plots", suffix=".json")
_STEP_OPTIONS: dict[str, Any] = {"retry_condition_fn": is_transient, "persist_result": True}


@task(name="extract_audio", cache_policy=_EXTRACT, **_STEP_OPTIONS)
def extract_audio(source: Path, work_dir: Path, *, stream: int | None = None) -> Path:
    """Decode one audio stream of `source` to a float32 WAV in `work_dir`.

    Returns
    -------
    Path
        ``extract-<key>.wav``, native sample rate and channel count.
    """
    target = _target(_EXTRACT, work_dir, {"source": source, "work_dir": work_dir, "stream": stream})
    media.extract_audio(source, target, stream=stream)
    return target


def _blocks(path: Path, channels: slice = slice(None)) -> Iterator[np.ndarray]:
    """Blocks of a WAV as float32 (frames, channels), read with soundfile; only the columns `channels`."""
    with sf.SoundFile(path) as handle:
        for block in handle.blocks(blocksize=READ_BLOCK, dtype="float32", always_2d=True):
            yield block[:, channels]


def estimate_file_profile(
    audio_wav: Path, noise: NoiseSettings, *, method: str | None = None, noise_wav: Path | None = None
) -> dsp.NoiseProfile:
    """Noise profile of a WAV file as `noise` asks, reading it block by block.

    Parameters
    ----------
    audio_wav : Path
        The audio to clean (a WAV written by :func:`extract_audio`).
    noise : NoiseSettings
        ``head``: its first ``head_samples``; ``segment``: ``start_s``..``end_s``;
        ``file``: all of `noise_wav`; ``auto``: tracked without a noise-only stretch.
    method : str or None
        The suppression method the profile is for (``seed`` has its own framing).
    noise_wav : Path or None
        The noise recording as a WAV, for ``mode="file"``.

    Returns
    -------
    destatic.dsp.NoiseProfile
    """
    sample_rate = sf.info(str(audio_wav)).samplerate
    mode = noise.resolved_mode(method)
    if mode != "file":
        source = audio_wav
    elif noise_wav is None:
        raise ValueError("noise.mode='file' needs noise_wav")
    else:
        source = noise_wav
        noise_rate = sf.info(str(noise_wav)).samplerate
        if noise_rate != sample_rate:
            raise BadInputError(noise.file or noise_wav, f"noise recording at {noise_rate} Hz, audio at {sample_rate} Hz")
    return dsp.profile_from_blocks(
        _blocks(source),
        sample_rate,
        mode=mode,
        head_samples=noise.head_samples,
        start_s=noise.start_s,
        end_s=noise.end_s,
        **dsp.framing_for(method),
    )


@task(name="profile_noise", cache_policy=_PROFILE, **_STEP_OPTIONS)
def profile_noise(
    audio_wav: Path,
    work_dir: Path,
    noise: NoiseSettings,
    *,
    method: str | None = None,
    noise_file: Path | None = None,
    noise_wav: Path | None = None,
) -> Path:
    """Estimate the noise profile of `audio_wav` and save it as ``profile-<key>.npz``."""
    inputs = {
        "audio_wav": audio_wav,
        "work_dir": work_dir,
        "noise": noise,
        "method": method,
        "noise_file": noise_file,
        "noise_wav": noise_wav,
    }
    target = _target(_PROFILE, work_dir, inputs)
    profile = estimate_file_profile(audio_wav, noise, method=method, noise_wav=noise_wav)
    with media.atomic_output(target) as partial:
        profile.save(partial)
    return target


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
        update_progress_artifact(artifact, progress=round(percent, 1))
    notify_progress(work_dir, percent)


class _Progress:
    """Moves a file's progress from `start` to `start + span` percent: the artifact at most every
    PROGRESS_EVERY_S, the listener at most every LISTENER_EVERY_S."""

    def __init__(self, artifact: Any, work_dir: Path, total: int, *, start: float, span: float) -> None:
        self.artifact, self.work_dir, self.total, self.start, self.span = artifact, work_dir, max(total, 1), start, span
        self.last = self.last_told = time.monotonic()

    def __call__(self, done: int) -> None:
        now, finished = time.monotonic(), done >= self.total
        percent = self.start + self.span * min(done, self.total) / self.total
        if self.artifact is not None and (now - self.last >= PROGRESS_EVERY_S or finished):
            update_progress_artifact(self.artifact, progress=round(percent, 1))
            self.last = now
        if now - self.last_told >= LISTENER_EVERY_S or finished:
            notify_progress(self.work_dir, percent)
            self.last_told = now


@task(name="subtract_noise", cache_policy=_SUBTRACT, **_STEP_OPTIONS)
def subtract_noise(audio_wav: Path, profile_npz: Path, work_dir: Path, suppression: SuppressionSettings, *, progress: Any = None) -> Path:
    """Compute the suppression gains of `audio_wav` into ``subtract-<key>.npy``.

    The file is a plain ``.npy`` of gains (float16, or float32 for the seed
    method: :func:`destatic.dsp.gain_dtype`) stored channels-major, shape
    (channels, frames, bins): each channel process reads the audio itself and
    writes its channels' rows in place, so no audio or gains pass between
    processes, nothing is memory-mapped, and resident memory does not grow
    with duration.
    """
    inputs = {"audio_wav": audio_wav, "profile_npz": profile_npz, "work_dir": work_dir, "suppression": suppression, "progress": progress}
    target = _target(_SUBTRACT, work_dir, inputs)
    profile = dsp.NoiseProfile.load(profile_npz)
    info = sf.info(str(audio_wav))
    _, frames, bins = dsp.gain_shape(info.frames, profile)
    dtype = dsp.gain_dtype(suppression.method)
    row_bytes = bins * dtype.itemsize
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (info.channels, frames, bins)}
    advance = _Progress(progress, work_dir, frames, start=20, span=40)
    with media.atomic_output(target) as partial, open(partial, "w+b") as out:
        np.lib.format.write_array_header_1_0(out, header)
        data_start = out.tell()
        out.truncate(data_start + info.channels * frames * row_bytes)
        out.flush()  # before the channel processes are forked: they write through the descriptor

        def store(group: slice, first_frame: int, gains: np.ndarray) -> None:
            for row, channel in enumerate(range(group.start, group.stop)):
                _write_at(out.fileno(), np.ascontiguousarray(gains[row], dtype), data_start + (channel * frames + first_frame) * row_bytes)

        done = 0
        for done in dsp.compute_gains_by_group(
            functools.partial(_blocks, audio_wav),
            info.channels,
            info.samplerate,
            profile,
            store,
            method=suppression.method,
            n_jobs=dsp.jobs_for_length(info.frames, info.samplerate),
            **suppression.dsp_options(),
        ):
            advance(done)
        if done != frames:
            raise RuntimeError(f"compute_gains gave {done} frames, frame_count said {frames}")
    return target


def _write_at(fd: int, data: np.ndarray, offset: int) -> None:
    """Write all of `data` at `offset` of the open file `fd` (its position is not used or moved)."""
    view = memoryview(data).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _gain_rows(gains_npy: Path, group: slice, *, frames_per_chunk: int = 256) -> Iterator[np.ndarray]:
    """Read the gains of the channels `group` back from a channels-major ``.npy``, as (group size, frames, bins) chunks."""
    with open(gains_npy, "rb") as source:
        if np.lib.format.read_magic(source) != (1, 0):
            raise RuntimeError(f"{gains_npy} is not a version 1.0 .npy as subtract_noise writes")
        (_, frames, bins), _, dtype = np.lib.format.read_array_header_1_0(source)
        data_start = source.tell()
        row_bytes = bins * dtype.itemsize
        channels = range(group.start, group.stop)
        for start in range(0, frames, frames_per_chunk):
            count = min(frames_per_chunk, frames - start)
            rows = [os.pread(source.fileno(), count * row_bytes, data_start + (channel * frames + start) * row_bytes) for channel in channels]
            if any(len(row) != count * row_bytes for row in rows):
                raise RuntimeError(f"{gains_npy} ends within frames {start}..{start + count} of {frames}")
            yield np.stack([np.frombuffer(row, dtype=dtype).reshape(count, bins) for row in rows])


@task(name="inverse_stft", cache_policy=_INVERSE, **_STEP_OPTIONS)
def inverse_stft(audio_wav: Path, gains_npy: Path, profile_npz: Path, work_dir: Path, *, progress: Any = None) -> Path:
    """Apply the gains to `audio_wav` and write the cleaned audio, ``inverse-<key>.wav`` (float32).

    Each channel process reads its audio and its gains itself; only the
    cleaned samples come back, to be written here.
    """
    inputs = {"audio_wav": audio_wav, "gains_npy": gains_npy, "profile_npz": profile_npz, "work_dir": work_dir, "progress": progress}
    target = _target(_INVERSE, work_dir, inputs)
    profile = dsp.NoiseProfile.load(profile_npz)
    info = sf.info(str(audio_wav))
    cleaned = dsp.apply_gains_by_group(
        functools.partial(_blocks, audio_wav),
        functools.partial(_gain_rows, gains_npy),
        info.channels,
        info.samplerate,
        profile=profile,
        n_jobs=dsp.jobs_for_length(info.frames, info.samplerate),
    )
    advance = _Progress(progress, work_dir, info.frames, start=60, span=30)
    with media.atomic_output(target) as partial:
        with sf.SoundFile(partial, "w", samplerate=info.samplerate, channels=info.channels, subtype="FLOAT", format="WAV") as out:
            written = 0
            for block in cleaned:
                out.write(block)
                written += len(block)
                advance(written)
    return target


@task(name="remux", cache_policy=_REMUX, **_STEP_OPTIONS)
def remux(source: Path, cleaned_wav: Path, work_dir: Path) -> Path:
    """Put the cleaned audio back into `source`'s container, the video copied bit for bit."""
    target = _target(_REMUX, work_dir, {"source": source, "cleaned_wav": cleaned_wav, "work_dir": work_dir})
    media.remux(source, cleaned_wav, target)
    return target


@task(name="export_audio", cache_policy=_EXPORT, **_STEP_OPTIONS)
def export_audio(cleaned_wav: Path, work_dir: Path, format: str) -> Path:
    """Encode the cleaned audio alone as `format` (wav, flac, mp3, m4a, ogg, opus)."""
    target = _target(_EXPORT, work_dir, {"cleaned_wav": cleaned_wav, "work_dir": work_dir, "format": format})
    media.export_audio(cleaned_wav, target, format=format)
    return target


def at_lowest_priority(work: Callable[[], Any]) -> Any:
    """Call `work` in a new thread at the lowest CPU priority (nice 19) and return its result.

    For work that only people read (plots) and that runs beside a step on the
    critical path (the encode): it then takes the CPU time the encoders leave,
    instead of slowing them. On Linux the nice value is per thread, and a new
    thread (not a pool thread, which would stay lowered) is given it; elsewhere
    the thread runs at normal priority.
    """

    def lowered() -> Any:
        if sys.platform == "linux":
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        return work()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="destatic-low") as pool:
        return pool.submit(lowered).result()


@task(name="plot_report", cache_policy=_PLOTS, **_STEP_OPTIONS)
def plot_report(audio_wav: Path, profile_npz: Path, cleaned_wav: Path, work_dir: Path) -> Path:
    """Plot the noise profile and the spectrograms before and after; estimate the reduction.

    Returns
    -------
    Path
        ``plots-<key>.json``: the two PNG paths (``plots-<key>-profile.png``,
        ``plots-<key>-spectrograms.png``), their small data: URIs and the
        estimated noise reduction in dB.
    """
    inputs = {"audio_wav": audio_wav, "profile_npz": profile_npz, "cleaned_wav": cleaned_wav, "work_dir": work_dir}
    target = _target(_PLOTS, work_dir, inputs)
    profile_png = target.with_name(f"{target.stem}-profile.png")
    spectrogram_png = target.with_name(f"{target.stem}-spectrograms.png")

    def draw() -> dict[str, Any]:
        return {
            "profile_png": str(profile_png),
            "spectrogram_png": str(spectrogram_png),
            "profile_uri": report.plot_profile(dsp.NoiseProfile.load(profile_npz), profile_png),
            "spectrogram_uri": report.plot_spectrograms(audio_wav, cleaned_wav, spectrogram_png),
            "reduction_db": report.noise_reduction_db(audio_wav, cleaned_wav),
        }

    record = at_lowest_priority(draw)
    with media.atomic_output(target) as partial:
        partial.write_text(json.dumps(record), encoding="utf-8")
    return target


@task(name="deliver", cache_policy=NO_CACHE, retry_condition_fn=is_transient)
def deliver(artifact: Path, output: Path) -> Path:
    """Copy a finished artifact to where the user wants it, atomically.

    A copy, not a link: editing the delivered file must not corrupt the cache.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    with media.atomic_output(output) as partial:
        shutil.copyfile(artifact, partial)
    return output

