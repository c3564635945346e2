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
:mod:`.methods`           one record per method: everything but its rule (loads nothing)
:mod:`.options`           the options records the rules take (loads nothing)
:mod:`.choices`           the profile and hum modes (loads nothing)
:mod:`.gains`             the classic suppression rules (logmmse, wiener, subtract, seed)
:mod:`.learned`           DeepFilterNet3 through its wheel; the deepfilter and hybrid rules
:mod:`.subtract`          the subtract step: a stream's gains, chunk by chunk
:mod:`.inverse`           the inverse step: gains applied, frames overlap-added
:mod:`.denoising`         both in one pass, in memory or streamed
:mod:`.gain_file`         the gains file both pipeline steps share
:mod:`.parallel`          channel groups in threads of this process, same result
:mod:`._kernels`          the compiled frame loops (numba), loaded on first use
:mod:`._numba`            how they are compiled and cached; their scalar pieces
========================  ==========================================================

Names are imported on first use, so that ``import destatic.dsp`` (and the
settings, which take its choices) loads no numpy or scipy.
"""

from typing import TYPE_CHECKING

from destatic._lazy import lazy_package

__getattr__, __dir__, __all__ = lazy_package(__name__)

if TYPE_CHECKING:
    from destatic.dsp._numba import caching_other_packages, loops_to_compile
    from destatic.dsp.choices import HUM_MODES, PROFILE_MODES, HumMode, ProfileMode
    from destatic.dsp.denoising import NoiseSpec, denoise, denoise_stream, resolve_profile, warm_up
    from destatic.dsp.framing import SEED_FRAMING, framing_for
    from destatic.dsp.gain_file import GainFileWriter, read_gain_rows
    from destatic.dsp.inverse import apply_gains, apply_gains_by_group
    from destatic.dsp.learned import DeepFilterStream, deepfilter
    from destatic.dsp.methods import LEARNED_METHODS, LEARNED_NEEDS, METHODS, Method, default_method, learned_available, method_spec, resolve_method
    from destatic.dsp.options import ProfileRequest, SuppressionOptions, deepest_reduction_db
    from destatic.dsp.parallel import jobs_for_length
    from destatic.dsp.profile import NoiseProfile, estimate_profile, find_hum, profile_from_blocks
    from destatic.dsp.stft import default_n_fft, frame_count, spectrogram_db
    from destatic.dsp.subtract import compute_gains, compute_gains_by_group, gain_dtype, gain_shape
