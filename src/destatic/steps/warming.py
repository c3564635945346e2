"""Start the children the isolated steps run in, ahead of their first step. No Prefect here.

Called by the flow as a file starts, and by ``destatic run`` before it
loads Prefect, so that the children's start-up (their modules and compiled
loops, about 1 s of CPU each) overlaps Prefect's instead of the extraction.
"""

from __future__ import annotations

import functools
from pathlib import Path

from destatic import dsp
from destatic.settings import Settings
from destatic.steps import isolated, plots, report

__all__ = ["warm_children"]


def warm_children(settings: Settings, work_dir: Path) -> None:
    """Start the DSP child and the report's child, each loading now what its first step needs, if the steps run in children.

    Nothing is started when ``runtime.isolate_steps`` is off or the steps
    run on Dask, nor for a child already idle or starting. The DSP child
    cleans a second of noise with the method of the settings (:func:`destatic.dsp.warm_up`);
    the report's imports its plotting libraries at the lowest priority
    (:func:`destatic.steps.plots.warm_up`), with its numba fallback in
    `work_dir` as the report step's. See :func:`destatic.steps.isolated.warm`.
    """
    if not (settings.runtime.isolate_steps and settings.runtime.task_runner == "thread"):
        return
    isolated.warm("steps", dsp.warm_up, settings.suppression.method)
    isolated.warm("report", report.at_lowest_priority, functools.partial(plots.warm_up, work_dir / ".numba"))
