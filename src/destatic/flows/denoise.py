"""The flows that clean files: ``denoise-file`` (one file) and ``denoise-files`` (many in one run).

They only order the steps (:mod:`destatic.flows.graph`) and say what becomes
of a file that fails; the inbox's bookkeeping is :mod:`destatic.inbox`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.context import FlowRunContext
from prefect.states import Failed

from destatic import cache, inbox, media, outage
from destatic.dsp.choices import resolve_method
from destatic.errors import DestaticError, ParameterError, is_disk_full, reason_of
from destatic.flows.graph import FileRun, finish_steps, start_steps, submit_steps
from destatic.flows.logs import quiet_destatic_tracebacks
from destatic.runners import task_runner_for
from destatic.settings import Settings, load_settings

__all__ = ["OUTPUTS_KEY", "denoise_file", "denoise_files", "keep_the_budget", "run_batch", "run_tags"]


def run_tags(settings: Settings) -> list[str]:
    """The tags of a run cleaning files with `settings`: ``destatic`` and the method, so the UI can filter by them."""
    return ["destatic", resolve_method(settings.suppression.method)]


def _file_run_name() -> str:
    """``denoise-<file name>``: the UI's list of runs reads as a list of files."""
    from prefect.runtime import flow_run

    return f"denoise-{Path(str(flow_run.parameters.get('path', 'file'))).name}"


def _files_run_name() -> str:
    from prefect.runtime import flow_run

    paths = flow_run.parameters.get("paths") or []
    first = Path(str(paths[0])).name if paths else "nothing"
    return f"denoise-{first}" + (f"-and-{len(paths) - 1}-more" if len(paths) > 1 else "")


def keep_the_budget(settings: Settings) -> None:
    """Evict the least recently used entries of the work folder until it fits ``cache.max_gb``."""
    work = settings.paths.work.resolve()
    pruned = cache.prune(work, cache.budget_bytes(work, settings.cache.max_gb))
    if pruned.removed:
        get_run_logger().info(
            "work folder over its budget of %.2f GB: evicted %d entries (%.1f MB), %.2f GB left",
            pruned.budget / 1024**3, len(pruned.removed), (pruned.size_before - pruned.size_after) / 1024**2, pruned.size_after / 1024**3,
        )


OUTPUTS_KEY = "destatic-outputs"
"""The key of the table artifact of what a run wrote: its files' summaries (a watcher reads a dispatched file's score from it)."""


def _publish_outputs(runs: list[FileRun]) -> None:
    """A table artifact of what the run wrote: each output with its duration and estimated noise reduction."""
    rows = [run.summary for run in runs if run.summary]
    if rows:
        with outage.best_effort("the outputs table"):
            create_table_artifact(rows, key=OUTPUTS_KEY, description="destatic outputs: file, output, seconds, estimated noise reduction (dB), method")


def _denoise_one(
    source: Path,
    settings: Settings,
    *,
    output: Path | None,
    residue: Path | None = None,
    on_failure: Callable[[str, Exception], Any] | None = None,
) -> Path:
    """Clean one file through the graph; `on_failure(step, error)` is called before its error is raised.

    A disk that fills up is met once by evicting all of the work folder that
    no run is using (this file's folder is kept), and the file is tried again.
    """
    for attempt in (1, 2):
        run = FileRun(source=source, settings=settings, output=output, residue=residue)
        try:
            start_steps(run)
            submit_steps(run)
            delivered = finish_steps(run)
            _publish_outputs([run])
            return delivered
        except Exception as error:
            if attempt == 1 and is_disk_full(error):
                pruned = cache.clear(settings.paths.work.resolve())
                get_run_logger().warning(
                    "%s: disk full at step %s; evicted %d entries (%.1f MB) of the work folder, trying once more",
                    source.name, run.step, len(pruned.removed), (pruned.size_before - pruned.size_after) / 1024**2,
                )
                continue
            if on_failure is not None:
                on_failure(run.step, error)
            raise
        finally:
            run.release()
    raise AssertionError("unreachable")


def _settle_claim(folder: Path, settings: Settings) -> Path:
    """Clean the file of a claim folder and settle it as the watcher would; see :func:`denoise_file` (`claim`)."""
    settled = inbox.settled_output(folder)
    if settled is not None:  # delivered and moved to done/ by an earlier attempt of this run
        return settled
    taken = inbox.claimed(folder)
    if taken is None:
        raise DestaticError(f"claim {str(folder)!r} holds no file: it was released or settled by another run")

    def on_failure(step: str, error: Exception) -> None:
        if not outage.api_unreachable(error):  # an outage is not the file's: the claim stays, the watcher runs it again
            get_run_logger().error("%s", inbox.settle_failure(taken, settings, step=step, error=error))

    target = inbox.outbox_path(taken.relative, settings)
    try:
        with inbox.staged(taken, target) as (source, output):
            _denoise_one(source, settings, output=output, on_failure=on_failure)
    except Exception as error:  # not on cancellation: the claim is given back once the run is over
        if outage.api_unreachable(error):
            raise
        outcome = inbox.give_back(taken, settings, error)  # the file, if the steps did not settle it (a link, say)
        if outcome is not None:
            get_run_logger().error("%s", outcome)
        raise
    inbox.settle_success(taken, target, settings)
    return target


@flow(name="denoise-file", flow_run_name=_file_run_name, log_prints=False)
def denoise_file(
    path: Path,
    settings: Settings | None = None,
    *,
    output: Path | None = None,
    residue: Path | None = None,
) -> Path:
    """Clean one file: extract, profile, subtract, inverse STFT, remux or export.

    Parameters
    ----------
    path : Path
        A video or audio file; or a claim folder of the inbox
        (``inbox/.processing/<id>``, :func:`destatic.inbox.claim`), whose
        file the run then settles as the watcher would: the result to the
        outbox under its relative path, the original to ``done/``; bad input
        to quarantine; after another failure the original back to the inbox,
        or to quarantine at the ``watch.max_attempts``-th such failure (see
        :func:`destatic.inbox.failure_record`); the claim released at the end.
        Run again after a crash, it completes the same file once.
    settings : Settings or None
        None: :func:`~destatic.settings.load_settings`.
    output : Path or None
        Where the result goes; None: :func:`~destatic.workspace.default_output`
        (a claimed file's goes to the outbox).
    residue : Path or None
        Also write what was removed here, encoded like the output; None: only
        with ``output.residue``, beside the output.

    Returns
    -------
    Path
        The written output. A file given by path is never moved, whatever
        happens; only a claimed file is settled.

    Raises
    ------
    BadInputError
        The input cannot be processed (never retried); the flow run fails with its reason.
    TransientError
        A failure that may not happen again (disk full, ffmpeg killed), once
        its step's retries are spent; the flow run fails with its reason.
    """
    quiet_destatic_tracebacks()
    outage.quiet_prefect_transport_errors()
    settings = settings or load_settings()
    source = Path(path).absolute()
    try:
        with media.time_limit(settings.runtime.ffmpeg_timeout_s):
            if inbox.is_claim(source):
                return _settle_claim(source, settings)
            return _denoise_one(source, settings, output=output, residue=residue)
    finally:
        keep_the_budget(settings)


def _row(run: FileRun, written: Path | None) -> dict[str, Any]:
    """What became of one file of a batch."""
    failed = run.error is not None
    flow_run = FlowRunContext.get()
    return {
        "flow_run": str(flow_run.flow_run.id) if flow_run and flow_run.flow_run else "",
        "file": str(run.source),
        "status": "failed" if failed else "done",
        "output": str(written or ""),
        "step": run.step if failed else "",
        "reason": reason_of(run.error) if failed else "",
        "speech_quality": run.summary.get("speech_quality"),
        "needs_listening": run.summary.get("needs_listening", False),
    }


@flow(name="denoise-files", flow_run_name=_files_run_name, log_prints=False)
def denoise_files(
    paths: list[Path],
    settings: Settings | None = None,
    *,
    outputs: list[Path] | None = None,
    residues: list[Path] | None = None,
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
        One output per input; None: :func:`~destatic.workspace.default_output` of each.
    residues : list of Path or None
        Where each input's residue goes (see :func:`denoise_file`).

    Returns
    -------
    list of dict
        One row per input, in order: flow_run (this run's id), file, status
        (``done`` or ``failed``), output, step (the failing one), reason.
    """
    quiet_destatic_tracebacks()
    settings = settings or load_settings()
    for name, given in (("outputs", outputs), ("residues", residues)):
        if given is not None and len(given) != len(paths):
            raise ParameterError(f"{name} has {len(given)} paths for {len(paths)} inputs; give one per input")
    runs = [
        FileRun(
            source=Path(path).absolute(),
            settings=settings,
            output=None if outputs is None else outputs[index],
            residue=None if residues is None else residues[index],
        )
        for index, path in enumerate(paths)
    ]
    written: dict[int, Path] = {}
    with media.time_limit(settings.runtime.ffmpeg_timeout_s):
        for phase in (start_steps, submit_steps, finish_steps):
            for index, run in enumerate(runs):
                if run.error is not None:
                    continue
                try:
                    result = phase(run)
                except Exception as error:  # one bad file does not stop the others
                    run.error = error
                    get_run_logger().error("%s failed at step %s: %s", run.source, run.step, reason_of(error))
                else:
                    if isinstance(result, Path):
                        written[index] = result
    for run in runs:
        run.release()
    _publish_outputs(runs)
    keep_the_budget(settings)
    rows = [_row(run, written.get(index)) for index, run in enumerate(runs)]
    failed = [row for row in rows if row["status"] == "failed"]
    if failed:
        return Failed(message=f"{len(failed)} of {len(rows)} file(s) failed, first {failed[0]['file']}: {failed[0]['reason']}", data=rows)
    return rows


def run_batch(
    paths: list[Path], settings: Settings, *, outputs: list[Path] | None = None, residues: list[Path] | None = None
) -> list[dict[str, Any]]:
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
    state = denoise_files.with_options(task_runner=runner)(paths, settings, outputs=outputs, residues=residues, return_state=True)
    rows = state.result(raise_on_failure=False)
    if isinstance(rows, BaseException):
        raise rows
    return rows
