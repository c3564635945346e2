"""The steps of cleaning one file, one module each, in the order they run. No Prefect here.

==================  =========================================================
step                what its ``run`` does
==================  =========================================================
:mod:`.extract`     decode the input's audio to a float32 WAV
:mod:`.profile`     measure the noise spectrum (and hum)
:mod:`.subtract`    the suppression gain of every bin of every STFT frame
:mod:`.inverse`     gains applied, inverse STFT back to samples
:mod:`.loudness`    the cleaned audio brought to a loudness, if asked for
:mod:`.residue`     what was taken out (input minus cleaned), if asked for
:mod:`.remux`       the original container with the cleaned audio, video copied
:mod:`.export`      or the cleaned audio alone, in an audio format
:mod:`.deliver`     the result copied to where the user asked
:mod:`.report`      plots (:mod:`.plots`), estimated reduction, speech quality (:mod:`.quality`)
==================  =========================================================

After the steps, :mod:`.report_page` writes ``report.md`` (rendered by
:mod:`.markdown`), ``report.html`` (:mod:`.listening`) and ``last-run.json``.

Each step's ``run`` takes the records of the steps before it
(:mod:`.records`) and the path to write, and returns its own record;
:mod:`destatic.tasks` wraps each one in a cached, retried Prefect task, which
runs the heavy ones in a child process without Prefect (:mod:`.isolated`).
"""

from typing import TYPE_CHECKING

from destatic._lazy import lazy_package

__getattr__, __dir__, __all__ = lazy_package(__name__)

if TYPE_CHECKING:
    from destatic.steps import (
        ahead,
        deliver,
        export,
        extract,
        inverse,
        isolated,
        loudness,
        markdown,
        plots,
        profile,
        quality,
        remux,
        report,
        report_page,
        residue,
        subtract,
        warming,
    )
    from destatic.steps.records import AudioFile, Encoded, ExtractedAudio, Gains, Leveled, Plots, ProfiledNoise
