"""The graph of one file's steps on the flow's task runner: submitted in order, waited for in order.

Each step is submitted with the futures of the steps it needs as arguments,
so that the steps of many files interleave (on threads, or across a Dask
cluster) while each file's steps keep their order. :class:`StepClock` is the
one place that times them.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact
from prefect.context import FlowRunContext, TagsContext
from prefect.futures import PrefectFuture

from destatic import cache, media, outage, preflight, shortcut, steps, tasks
from destatic.dsp.choices import LEARNED_NEEDS, default_method, learned_available, resolve_method
from destatic.errors import UncleanableAudioError
from destatic.settings import Settings
from destatic.workspace import report_key, work_dir_for, writes_audio_only

__all__ = ["LONG_FILE_S", "FileRun", "StepClock", "finish_steps", "start_steps", "submit_steps"]

LONG_FILE_S = 60.0
"""Files at least this long get a progress artifact."""

class StepClock:
    """How long each step of a file took: from when its inputs were ready (or it was submitted) to its end.

    Work done in the flow itself (hashing, the report) is timed with :meth:`timed`.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._submitted: dict[str, float] = {}
        self._finished: dict[str, float] = {}
        self._needs: dict[str, tuple[str, ...]] = {}

    def watch(self, step: str, future: PrefectFuture[Any], needs: tuple[str, ...] = ()) -> None:
        """Start timing `step`, submitted now as `future`, once the steps it `needs` are done."""
        self._submitted[step] = time.perf_counter()
        self._needs[step] = needs
        future.add_done_callback(lambda _: self._finished.__setitem__(step, time.perf_counter()))

    def stop(self, step: str) -> None:
        """`step` has been waited for: record its time."""
        done = self._finished.get(step, time.perf_counter())
        ready = max([self._submitted[step], *(self._finished.get(need, 0.0) for need in self._needs[step])])
        self.seconds[step] = max(0.0, done - ready)

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Time work done in the flow itself as `step`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = time.perf_counter() - started


@dataclass
class FileRun:
    """One file going through the steps: the futures of its steps, their times, the step it is at."""

    source: Path
    settings: Settings
    output: Path | None = None
    residue: Path | None = None
    work_dir: Path = Path()
    step: str = "start"
    clock: StepClock = field(default_factory=StepClock)
    futures: dict[str, PrefectFuture[Any]] = field(default_factory=dict)
    progress: Any = None
    error: BaseException | None = None
    held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    summary: dict[str, Any] = field(default_factory=dict)

    def submit(self, step: str, task: Any, *args: Any, **kwargs: Any) -> PrefectFuture[Any]:
        """Submit `task` as `step` of this file, with its retries, backoff and result storage.

        The steps whose futures are among the arguments are the ones it waits
        for: its time counts from when they are done (:class:`StepClock`).

        The step's task run does not take the flow run's tags: a tagged task
        run asks the server for tag concurrency slots as it starts, a write
        that SQLite refuses ("database is locked") while other runs write,
        and the client's retry then holds the step back by 2 s.
        """
        runtime = self.settings.runtime
        configured = task.with_options(
            retries=runtime.retries,
            retry_delay_seconds=[runtime.retry_delay_s * 2**attempt for attempt in range(max(runtime.retries, 1))],
            result_storage=self.settings.paths.work.resolve() / "results",
        )
        with TagsContext(current_tags=set()):
            future = configured.submit(*args, **kwargs)
        given = {id(value) for value in (*args, *kwargs.values())}
        self.clock.watch(step, future, tuple(name for name, earlier in self.futures.items() if id(earlier) in given))
        self.futures[step] = future
        return future

    def wait(self, step: str) -> Any:
        """The result of `step`, raising its error; a refusal of the file's audio names the file.

        Only bad input (:class:`~destatic.errors.BadInputError`) is the file's
        fault; any other error (a :class:`~destatic.errors.ParameterError` a
        step raises is a bug in destatic) fails the run as it is.
        """
        self.step = step
        try:
            value = self.futures[step].result()
        except UncleanableAudioError as error:
            if error.path is not None:
                raise
            raise error.for_file(self.source) from error  # the DSP knows no file: say which
        self.clock.stop(step)
        return value

    def release(self) -> None:
        """Let the cache evict this file's work folder again (see :func:`destatic.cache.in_use`)."""
        self.held.close()


@functools.cache
def _say_once(message: str, *arguments: Any) -> None:
    """Log a warning once per process (a batch of files need not repeat it)."""
    get_run_logger().warning(message, *arguments)


def start_steps(run: FileRun) -> None:
    """Hash the input (its work folder) and submit the extraction of its audio (and of a noise file)."""
    settings, source = run.settings, run.source
    run.step = "hash"
    with run.clock.timed("hash"):
        run.work_dir = work_dir_for(source, settings)
    run.held.enter_context(cache.in_use(run.work_dir))
    checked = preflight.request(source, settings, output=run.output, residue=run.residue)
    run.output, run.residue = checked.output, checked.residue
    get_run_logger().info("%s -> %s (work folder %s)", source.name, run.output, run.work_dir)
    if settings.suppression.method is None and not learned_available():
        _say_once("the learned default method needs %s, not installed here: using %s", LEARNED_NEEDS, default_method())
    steps.warming.warm_children(settings, run.work_dir)  # if not started already: they load while the audio is extracted
    run.submit("extract", tasks.extract_audio, source, run.work_dir)
    if settings.noise.mode == "file":
        assert settings.noise.file is not None
        run.submit("noise", tasks.extract_audio, settings.noise.file.absolute(), run.work_dir)


def submit_steps(run: FileRun) -> None:
    """Once the audio is out (its length decides on a progress artifact), submit every later step."""
    settings, source, work_dir = run.settings, run.source, run.work_dir
    extracted: steps.ExtractedAudio = run.wait("extract")
    if extracted.duration >= LONG_FILE_S:
        run.progress = create_progress_artifact(progress=10.0, description=f"destatic: {source.name}")
    tasks.notify_progress(work_dir, 10.0)
    audio, noise_audio = run.futures["extract"], run.futures.get("noise")
    method, isolated = settings.suppression.method, settings.runtime.isolate_steps
    profile = run.submit(
        "profile", tasks.profile_noise, audio, work_dir, noise_audio=noise_audio, isolated=isolated, **steps.profile.arguments(settings)
    )
    gains = run.submit(
        "subtract", tasks.subtract_noise, audio, profile, work_dir, method, settings.suppression.options(),
        progress=run.progress, isolated=isolated,
    )
    cleaned = run.submit("inverse", tasks.inverse_stft, audio, gains, profile, work_dir, progress=run.progress, isolated=isolated)
    # The plots need only the audio and the profile: drawn while ffmpeg encodes.
    previews = not writes_audio_only(source, settings)
    run.submit("plots", tasks.plot_report, audio, profile, cleaned, work_dir, previews=previews, source=source, isolated=isolated)
    assert run.output is not None
    final = cleaned
    if settings.output.loudness_lufs is not None:
        final = run.submit(
            "loudness", tasks.level_loudness, audio, cleaned, work_dir, settings.output.loudness_lufs,
            settings.output.true_peak_db, isolated=isolated,
        )
    run.submit("deliver", tasks.deliver, _encode(run, "encode", final, run.output), run.output)
    if run.residue is not None:
        residue = run.submit("residue", tasks.residue, audio, cleaned, work_dir, isolated=isolated)
        run.submit("deliver residue", tasks.deliver, _encode(run, "encode residue", residue, run.residue), run.residue)


def _encode(run: FileRun, step: str, cleaned: PrefectFuture[Any], output: Path) -> PrefectFuture[Any]:
    """Submit the encode of `cleaned` as `output` needs it: the input's container remuxed, or the audio alone (an audio name)."""
    settings = run.settings
    if writes_audio_only(run.source, run.settings) or output.suffix.lower() in media.AUDIO_SUFFIXES:
        suffix = output.suffix.lower()
        fmt = settings.output.format or media.AUDIO_SUFFIXES.get(suffix) or suffix.lstrip(".") or "flac"
        return run.submit(step, tasks.export_audio, cleaned, run.work_dir, fmt)
    return run.submit(step, tasks.remux, run.source, run.futures["extract"], cleaned, run.work_dir)


def finish_steps(run: FileRun) -> Path:
    """Wait for the steps in order (the first that failed raises), then write and publish the report."""
    if "noise" in run.futures:
        run.wait("noise")
    for step in ("profile", "subtract", "inverse", *(["loudness"] if "loudness" in run.futures else []), "encode"):
        run.wait(step)
    delivered = run.wait("deliver")
    run.wait("plots")  # drawn beside the encode; its time is the report's
    if run.residue is not None:
        for step in ("residue", "encode residue", "deliver residue"):
            run.wait(step)
    tasks.report_progress(run.progress, run.work_dir, 100.0)
    run.step = "report"
    with run.clock.timed("report"):
        key = report_key(run.source)
        flow_run = FlowRunContext.get()
        text = steps.report_page.write_report(
            source=run.source,
            output=delivered,
            work_dir=run.work_dir,
            audio=run.futures["extract"].result(),
            noise=run.futures["profile"].result(),
            cleaned=run.futures["inverse"].result(),
            plots=run.futures["plots"].result(),
            loudness=run.futures["loudness"].result() if "loudness" in run.futures else None,
            settings=run.settings,
            step_seconds=run.clock.seconds,
            artifact_key=key,
            flow_run_id=str(flow_run.flow_run.id) if flow_run and flow_run.flow_run else None,
        )
        with outage.best_effort(f"the report artifact of {run.source.name}"):
            create_markdown_artifact(text, key=key, description=f"destatic report of {run.source.name}")
    cache.mark_used(future.result().path for step, future in run.futures.items() if not step.startswith("deliver") and step != "noise")
    shortcut.remember(
        run.work_dir,
        shortcut.request_key(run.source, run.settings, output=delivered, residue=run.residue),
        encoded=run.futures["encode"].result().path,
        residue=run.futures["encode residue"].result().path if run.residue is not None else None,
    )
    extracted, plots = run.futures["extract"].result(), run.futures["plots"].result()
    flagged = steps.quality.needs_listening(plots.quality)
    run.summary = {
        "file": run.source.name,
        "output": str(delivered),
        "duration_s": round(extracted.duration, 2),
        "reduction_db": None if plots.reduction_db is None else round(plots.reduction_db, 1),
        "speech_quality": (plots.quality or {}).get("output", {}).get("ovrl"),
        "needs_listening": flagged,
        "method": resolve_method(run.settings.suppression.method),
    }
    if flagged:
        _tag_flow_run(NEEDS_LISTENING)
    FINISHED[str(delivered)] = run.summary
    get_run_logger().info("%s done in %.2f s: %s; %s", run.source.name, sum(run.clock.seconds.values()), delivered,
                          steps.quality.describe(plots.quality))
    return delivered


NEEDS_LISTENING = "needs-listening"
"""The tag of a flow run whose output scored low (:func:`destatic.steps.quality.needs_listening`)."""
FINISHED: dict[str, dict[str, Any]] = {}
"""The summary of each output this process finished, by its path: the watcher's table reads (and removes) its file's."""


def _tag_flow_run(tag: str) -> None:
    """Add `tag` to the current flow run (best effort: a server that does not answer loses only the tag)."""
    from prefect import get_client

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    try:
        with get_client(sync_client=True) as client:
            tags = client.read_flow_run(context.flow_run.id).tags
            client.update_flow_run(context.flow_run.id, tags=sorted({*tags, tag}))
    except Exception as error:  # the tag is a convenience; the report says the same
        get_run_logger().warning("could not tag the flow run %s: %s", tag, error)
