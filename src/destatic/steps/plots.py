"""The report's plots: the noise profile and the spectrograms before and after, each a full PNG and a small copy.

matplotlib (Agg backend) and librosa are imported only when a plot is drawn,
at the lowest CPU priority (:func:`at_lowest_priority`), beside the encode.
Every plot is written twice: a full-size PNG in the work folder, and a small
one returned as a ``data:`` URI (downsampled, 48 colours: tens of kB), which
the markdown report embeds so that the Prefect UI shows it inline.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from destatic import dsp
from destatic.steps.listening import read_mono

__all__ = ["SPECTROGRAM_CELLS", "at_lowest_priority", "fit_to_cells", "plot_profile", "plot_spectrograms", "png_data_uri", "spectrogram_fft_size", "warm_up"]

FULL_DPI = 100
EMBED_DPI = 45
EMBED_COLORS = 48
FULL_PNG_COMPRESSION = 1
"""zlib level of the full-size PNGs: a noisy spectrogram compresses little, and level 6 took 3x as long."""
SPECTROGRAM_SECONDS = 30.0
"""Seconds drawn when no excerpt is given."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> str:
    """Write `figure` to `path` at full size; return a small copy as a data: URI.

    The small copy is the full PNG scaled down and quantised (one render, not two).
    The figure is emptied as well as closed: its artists are reference cycles that
    wait for Python's full collections, which come seldom in a process holding
    Prefect or numba (drawn in such a process with them held off, 8.2 MiB a spectrogram
    plot stayed; 2.6 emptied).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=FULL_DPI, pil_kwargs={"compress_level": FULL_PNG_COMPRESSION})
    _pyplot().close(figure)
    figure.clear()
    from PIL import Image

    small = io.BytesIO()
    with Image.open(path) as image:
        size = (max(1, image.width * EMBED_DPI // FULL_DPI), max(1, image.height * EMBED_DPI // FULL_DPI))
        thumbnail = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        thumbnail.quantize(colors=EMBED_COLORS).save(small, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(small.getvalue()).decode("ascii")


def png_data_uri(path: Path) -> str:
    """A PNG file as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def plot_profile(profile: Any, path: Path, *, title: str | None = None) -> str:
    """Plot a noise profile (:class:`destatic.dsp.NoiseProfile`, drawn by its own ``plot``).

    Parameters
    ----------
    profile : destatic.dsp.NoiseProfile
        The profile to draw, power per channel and bin.
    path : Path
        PNG written here.
    title : str or None
        None: the profile's own title.

    Returns
    -------
    str
        A downsampled copy of the plot as a data: URI.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 3))
    db = profile.power_db()
    for channel in range(profile.channels):
        axes.semilogx(profile.frequencies[1:], db[channel, 1:], label=f"channel {channel}")
    axes.set_xlabel("frequency (Hz)")
    axes.set_ylabel("noise power (dB FS)")
    axes.set_title(title or f"noise profile ({profile.mode}, {profile.sample_rate} Hz, n_fft {profile.n_fft})")
    axes.grid(True, which="both", alpha=0.3)
    if profile.channels > 1:
        axes.legend()
    figure.subplots_adjust(left=0.09, right=0.98, bottom=0.16, top=0.9)
    return _save(figure, path)


SPECTROGRAM_CELLS = (640, 240)
"""At most this many columns (time) and rows (log-spaced frequency bands) per spectrogram: about the axes' pixels.
Finer cells would not show, and each costs matplotlib's mesh memory (a 15 s excerpt at 48 kHz took 250 MB unpooled)."""


def fit_to_cells(
    density: np.ndarray, times: np.ndarray, hertz: np.ndarray, *, columns: int, rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool a dB spectrogram to at most `columns` frames and `rows` log-spaced bands, by mean power.

    `times` and `hertz` are the cell edges (one more than the frames and bins).
    Frames pool in equal groups; a bin joins the band its centre falls in on a
    log scale from the first bin above 0 Hz up (the 0 Hz bin joins it), so
    the low bins, each wider than a band, stay as they are. Returns the pooled density and its edges.
    """
    step = -(-density.shape[1] // columns)
    power = 10 ** (density / 10)
    if step > 1:
        starts = np.arange(0, density.shape[1], step)
        power = np.add.reduceat(power, starts, axis=1) / np.diff(np.append(starts, density.shape[1]))
        times = np.append(times[starts], times[-1])
    centres = (hertz[:-1] + hertz[1:]) / 2
    lowest = max(float(centres[1]) if len(centres) > 1 else 1.0, 1e-9)
    band = np.floor(np.log(np.maximum(centres, lowest) / lowest) / np.log(max(centres[-1] / lowest, 1 + 1e-9)) * (rows - 1))
    firsts = np.flatnonzero(np.diff(band, prepend=-1.0))
    power = np.add.reduceat(power, firsts, axis=0) / np.diff(np.append(firsts, len(band)))[:, np.newaxis]
    return 10 * np.log10(power), times, np.append(hertz[firsts], hertz[-1])


def spectrogram_fft_size(sample_rate: int) -> int:
    """FFT size of the report's spectrograms: 1024 above 24 kHz, else 512 (about 21 ms either way at the usual rates)."""
    return 1024 if sample_rate > 24000 else 512


def plot_spectrograms(
    before_wav: Path, after_wav: Path, path: Path, *, start: float = 0.0, seconds: float = SPECTROGRAM_SECONDS
) -> str:
    """Plot the spectrograms of `seconds` from `start` before and after cleaning, one above the other.

    Drawn by ``librosa.display.specshow``: time in seconds of the file, frequency in Hz on a log scale.

    Returns
    -------
    str
        A downsampled copy of the plot as a data: URI.
    """
    plt = _pyplot()
    from librosa.display import specshow

    figure, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for ax, wav, label in ((axes[0], before_wav, "before"), (axes[1], after_wav, "after")):
        audio, sr = read_mono(wav, start, seconds)
        nfft = spectrogram_fft_size(sr)
        if len(audio) >= nfft:
            hop = nfft // 2
            density = dsp.spectrogram_db(audio, sr, nfft)
            times = start + (np.arange(density.shape[1] + 1) * hop + (nfft - hop) / 2) / sr
            hertz = np.maximum(0.0, (np.arange(density.shape[0] + 1) - 0.5) * sr / nfft)
            density, times, hertz = fit_to_cells(density, times, hertz, columns=SPECTROGRAM_CELLS[0], rows=SPECTROGRAM_CELLS[1])
            specshow(density, x_coords=times, y_coords=hertz, sr=sr, x_axis="time", y_axis="log", cmap="magma", vmin=-140, vmax=-20, ax=ax)
        ax.set_ylabel(f"{label}\nfrequency (Hz)")
        ax.label_outer()
    axes[1].set_xlabel("time (s)")
    figure.subplots_adjust(left=0.12, right=0.98, bottom=0.1, top=0.97, hspace=0.12)
    return _save(figure, path)


def warm_up(fallback: Path) -> None:
    """Load what the plots use: matplotlib (Agg), librosa's display (its cached numba functions: `fallback`
    as for :func:`destatic.dsp.caching_other_packages`), PIL and the spectrogram's FFT (framed by numpy:
    no compiled loops of ours in that child).

    For the report's child (:func:`destatic.steps.report.warm_up`). No figure is drawn: that
    saved the step 0.7 s more on a 10-minute video, but what matplotlib kept
    of it raised the child's peak by 9 MiB, over the 250 MB the unattended
    figures allow.
    """
    from PIL import Image  # noqa: F401  (for the small copies)

    _pyplot()
    with dsp.caching_other_packages(fallback):
        import librosa.display  # noqa: F401
    dsp.spectrogram_db(np.zeros(2048, np.float32), 48000, spectrogram_fft_size(48000))


def at_lowest_priority(work: Callable[[], Any]) -> Any:
    """Call `work` in a new thread at the lowest CPU priority (nice 19) and return its result.

    For work that only people read (plots) and that runs beside a step on the
    critical path (the encode): it then takes the CPU time the encoders leave,
    instead of slowing them. On Linux the nice value is per thread, and a new
    thread (not a pool thread, which would stay lowered) is given it; elsewhere
    the thread runs at normal priority.
    """

    def lowered() -> Any:
        if sys.platform == "linux":
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        return work()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="destatic-low") as pool:
        return pool.submit(lowered).result()
