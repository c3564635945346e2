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
:mod:`.report`      plots (:mod:`.plots`), estimated reduction, speech quality (:mod:`.quality`); then ``report.md``
==================  =========================================================

Each step's ``run`` takes the records of the steps before it
(:mod:`.records`) and the path to write, and returns its own record;
:mod:`destatic.tasks` wraps each one in a cached, retried Prefect task, which
runs the heavy ones in a child process without Prefect (:mod:`.isolated`).
"""

from typing import TYPE_CHECKING

from destatic._lazy import lazy_names

_NAMES = dict.fromkeys(('AudioFile', 'Encoded', 'ExtractedAudio', 'Gains', 'Leveled', 'Plots', 'ProfiledNoise'), "destatic.steps.records")
__getattr__, __dir__ = lazy_names(__name__, _NAMES)
__all__ = [
    "AudioFile",
    "Encoded",
    "ExtractedAudio",
    "Gains",
    "Leveled",
    "Plots",
    "ProfiledNoise",
    "deliver",
    "export",
    "extract",
    "inverse",
    "isolated",
    "loudness",
    "plots",
    "profile",
    "quality",
    "remux",
    "report",
    "residue",
    "subtract",
    "warming",
]

if TYPE_CHECKING:
    from destatic.steps import deliver, export, extract, inverse, isolated, loudness, plots, profile, remux, report, residue, subtract, warming
    from destatic.steps.records import AudioFile, Encoded, ExtractedAudio, Gains, Leveled, Plots, ProfiledNoise
