"""Start ahead what a file's first steps need: the children the isolated steps run in, the extraction and the profile. No Prefect here.

The flow starts the children as a file starts. ``destatic run`` starts them,
the extraction and the profile before it loads Prefect (:func:`start_ahead`),
so that their start-up (the children's modules and compiled loops, about 1 s
of CPU each), the decoding and the profile overlap Prefect's start and the
creation of the flow run instead of following them.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from destatic import dsp
from destatic.dsp.methods import CLASSIC_DEFAULT
from destatic.steps import ahead, extract, isolated, plots, profile, report

if TYPE_CHECKING:
    from destatic.settings import Settings

__all__ = ["start_ahead", "warm_children", "warm_dsp"]


def warm_children(settings: Settings, work_dir: Path) -> None:
    """Start the DSP child and the report's child, each loading now what its first step needs, if the steps run in children.

    Nothing is started when ``runtime.isolate_steps`` is off or the steps
    run on Dask, nor for a child already idle or starting, nor a DSP child
    while the profile begun ahead for this file holds one. The DSP child
    cleans a second of noise with the method of the settings (:func:`warm_dsp`);
    the report's loads its plotting libraries and scoring sessions at the lowest priority
    (:func:`destatic.steps.report.warm_up`), with its numba fallback in
    `work_dir` as the report step's. See :func:`destatic.steps.isolated.warm`.
    """
    if not (settings.runtime.isolate_steps and settings.runtime.task_runner == "thread"):
        return
    if not ahead.pending("profile", work_dir):  # else the DSP child is warm, and busy with the profile
        isolated.warm("steps", warm_dsp, settings.suppression.method)
    isolated.warm("report", plots.at_lowest_priority, functools.partial(report.warm_up, work_dir / ".numba"))


def warm_dsp(method: str | None) -> None:
    """In the DSP child: :func:`destatic.dsp.warm_up` with `method`, its loops compiled in other processes first if none is.

    With numba's cache empty (the first run of a version), a process that
    compiles every loop the default method uses peaked at 336 MiB, and the
    DSP child that did so at 359 MiB in its run, over the 300 MB a run's
    largest process may take: the compiler's memory stays with the process.
    So the classic method's loops are compiled in a process of their own
    (255 MiB), then the rest of `method`'s in another (269 MiB), each of
    which ends, and this child only loads them. Should those processes fail,
    this child compiles what is missing, as before. Where the cache cannot be
    written, nothing would be kept for this child to load: it compiles alone.
    """
    if dsp.loops_to_compile():
        for compiling in dict.fromkeys((CLASSIC_DEFAULT, method)):
            warm = f"from destatic import dsp; dsp.warm_up({compiling!r})"
            subprocess.run([sys.executable, "-c", warm], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=False)
    dsp.warm_up(method)


def start_ahead(settings: Settings, source: Path, work_dir: Path) -> None:
    """Start the children (:func:`warm_children`), the decoding of `source`'s audio and then its profile.

    Only when the steps run on threads of this process, where the extract
    step takes the decoding over (:func:`destatic.steps.extract.start_ahead`)
    and the profile step the profile (:mod:`destatic.steps.ahead`); on Dask,
    nothing. The profile is begun only when its step would run in the DSP
    child (``runtime.isolate_steps``), which it then takes until the profile
    is made, and not for a noise file's profile (its extraction is the flow's).
    """
    if settings.runtime.task_runner != "thread":
        return
    warm_children(settings, work_dir)
    decoding = extract.start_ahead(source, work_dir, time_limit_s=settings.runtime.ffmpeg_timeout_s)
    if decoding is None or not settings.runtime.isolate_steps or settings.noise.mode == "file":
        return
    given = profile.arguments(settings)

    def measure() -> ahead.Made | None:
        audio = decoding.result()[1]
        target = profile.target_in(work_dir, audio, given)
        if target.is_file() or not isolated.warmed("steps", unless=ahead.closing):
            return None
        return target, isolated.call(profile.run, audio, target, **given)

    ahead.begin("profile", work_dir, measure)
