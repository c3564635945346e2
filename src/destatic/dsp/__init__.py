"""destatic's signal-processing core: numpy/scipy, its frame loops compiled by numba; no Prefect, no media files.

One-call use is :func:`denoise`; long recordings stream through
:func:`denoise_stream`, or through the pipeline's two steps,
:func:`compute_gains` (subtract: the suppression gains) then
:func:`apply_gains` (inverse STFT), when they run and are cached separately.

========================  ==========================================================
module                    what it holds
========================  ==========================================================
:mod:`.stft`              streaming STFT with exact length and zero delay
:mod:`.profile`           noise profiles: measured, or found under speech
:mod:`.noise`             minimum statistics and the MCRA noise tracker
:mod:`.tones`             steady tones (hum): found, fitted, cancelled coherently
:mod:`.gains`             the suppression rules (logmmse, wiener, subtract, seed)
:mod:`.subtract`          the subtract step: a stream's gains, chunk by chunk
:mod:`.inverse`           the inverse step: gains applied, frames overlap-added
:mod:`.denoise`           both in one pass, in memory or streamed
:mod:`.gain_file`         the gains file both pipeline steps share
:mod:`.parallel`          channel groups in threads of this process, same result
:mod:`._kernels`          the compiled frame loops (numba), loaded on first use
:mod:`._numba`            how they are compiled and cached; their scalar pieces
========================  ==========================================================
"""

from destatic.dsp.denoise import NoiseSpec, denoise, denoise_stream, jobs_for_length, resolve_profile
from destatic.dsp.framing import SEED_FRAMING, framing_for
from destatic.dsp.gain_file import GainFileWriter, read_gain_rows
from destatic.dsp.gains import DEFAULT_METHOD, METHODS, Method, SuppressionOptions, resolve_method
from destatic.dsp.inverse import apply_gains, apply_gains_by_group
from destatic.dsp.profile import PROFILE_MODES, NoiseProfile, ProfileMode, estimate_profile, profile_from_blocks
from destatic.dsp.stft import default_n_fft, frame_count, spectrogram_db
from destatic.dsp.subtract import compute_gains, compute_gains_by_group, gain_dtype, gain_shape

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "PROFILE_MODES",
    "SEED_FRAMING",
    "GainFileWriter",
    "Method",
    "NoiseProfile",
    "NoiseSpec",
    "ProfileMode",
    "SuppressionOptions",
    "apply_gains",
    "apply_gains_by_group",
    "compute_gains",
    "compute_gains_by_group",
    "default_n_fft",
    "denoise",
    "denoise_stream",
    "estimate_profile",
    "framing_for",
    "frame_count",
    "gain_dtype",
    "gain_shape",
    "jobs_for_length",
    "profile_from_blocks",
    "read_gain_rows",
    "resolve_method",
    "resolve_profile",
    "spectrogram_db",
]
