"""What persists over a measured noise: the gain that keeps held notes and room sound where no voice is.

A held note or a room's sound keeps a bin's power over the noise frame after
frame, while the noise's chance peaks average out over
:data:`PERSIST_FRAMES` frames. So where a bin's power averaged over them
stands clear of the noise, the hybrid's classic gain keeps at least that
average's Wiener gain ``1 - N / P``. Two kinds of "over the profile" are not
content, and are left to the classic rule: noise that has grown louder
everywhere (the noise compared with is the profile raised, frame by frame, by
the :data:`PERSIST_QUANTILE` over bins of the averaged power over it, as the
classic rule's tracker lets a measured noise drift), and the bins of the
profile's tones (a separate recording's tones have no phase, so they cannot
be cancelled: what is left there is known noise).
"""

from __future__ import annotations

import numpy as np

__all__ = ["PERSIST_FRAMES", "persistent_gain"]

PERSIST_FRAMES = 25
"""Frames the input's power is averaged over (chance peaks of steady noise average out, held notes do not)."""
PERSIST_QUANTILE = 0.1
"""The share of bins whose averaged power over the profile sets how far the whole noise has drifted up."""
PERSIST_OVER_DB = 3.0
"""Averaged power this far over the (drifted) noise: the gain starts to be kept; fully from ``+ PERSIST_SPAN_DB``."""
PERSIST_SPAN_DB = 6.0


def persistent_gain(power: np.ndarray, noise_power: np.ndarray, free: np.ndarray) -> np.ndarray:
    """The Wiener gain of averaged power where it persists over the noise and the noise has not simply grown.

    Parameters
    ----------
    power : np.ndarray [shape=(rows, frames, bins)]
        The input's power averaged over :data:`PERSIST_FRAMES` frames centred on each frame.
    noise_power : np.ndarray [shape=(rows, bins)]
        The measured profile's noise power.
    free : np.ndarray [shape=(bins,), dtype=bool]
        False in the bins of the profile's tones (never kept).

    Returns
    -------
    np.ndarray [shape=(rows, frames, bins)]
        ``1 - N / P`` weighted 0 at :data:`PERSIST_OVER_DB` over the drifted
        noise ``N`` to 1 six dB higher; 0 where ``free`` is False.
    """
    profile = np.maximum(noise_power[:, np.newaxis, :], 1e-30)
    drift = np.maximum(np.quantile(power / profile, PERSIST_QUANTILE, axis=-1), 1.0)
    noise = profile * drift[..., np.newaxis]
    weight = np.clip((10 * np.log10(power / noise + 1e-12) - PERSIST_OVER_DB) / PERSIST_SPAN_DB, 0, 1)
    return weight * np.clip(1 - noise / np.maximum(power, 1e-30), 0, 1) * free
