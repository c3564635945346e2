"""destatic's signal-processing core: pure numpy/scipy, no files, no Prefect.

One-call use is :func:`denoise`; long recordings stream through
:func:`denoise_stream`, or through :func:`compute_gains` then
:func:`apply_gains` when the two steps are run and cached separately.
"""

from destatic.dsp.engine import (
    SEED_FRAMING,
    NoiseSpec,
    apply_gains,
    apply_gains_by_group,
    compute_gains,
    compute_gains_by_group,
    denoise,
    denoise_stream,
    framing_for,
    gain_dtype,
    gain_shape,
    jobs_for_length,
    resolve_profile,
)
from destatic.dsp.gains import DEFAULT_METHOD, METHODS, SuppressionOptions
from destatic.dsp.profile import NoiseProfile, ProfileMode, estimate_profile, profile_from_blocks
from destatic.dsp.stft import default_n_fft, frame_count

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "NoiseProfile",
    "NoiseSpec",
    "SEED_FRAMING",
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
    "resolve_profile",
]
