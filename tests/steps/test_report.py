"""Report pieces: the spectrogram's scale, the low-priority plotting thread."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest
from matplotlib import mlab

from destatic import dsp
from destatic.steps import plots


def test_spectrogram_matches_matplotlib_specgram_scale(rng: np.random.Generator) -> None:
    sample_rate, n_fft = 48_000, 1024
    t = np.arange(3 * sample_rate) / sample_rate
    audio = (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    ours = dsp.spectrogram_db(audio, sample_rate, n_fft)
    theirs, _, _ = mlab.specgram(audio, NFFT=n_fft, Fs=sample_rate, noverlap=n_fft // 2)
    assert ours.shape == theirs.shape
    difference = np.abs(ours - 10 * np.log10(theirs))
    assert np.median(difference) < 0.1  # a periodic against a symmetric Hann window
    tone_bin = round(1000 * n_fft / sample_rate)
    assert abs(np.median(ours[tone_bin]) - np.median(10 * np.log10(theirs[tone_bin]))) < 0.5


@pytest.mark.skipif(sys.platform != "linux", reason="the nice value is per thread only on Linux")
def test_low_priority_work_runs_niced_in_its_own_thread() -> None:
    caller_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def work() -> tuple[int, int]:
        return threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    thread, nice = plots.at_lowest_priority(work)
    assert nice == 19
    assert thread != threading.get_native_id()
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller_before


def test_low_priority_work_raises_its_error() -> None:
    def work() -> None:
        raise ValueError("plot failed")

    with pytest.raises(ValueError, match="plot failed"):
        plots.at_lowest_priority(work)


def test_the_profile_plot_draws_every_channel(rng: np.random.Generator, tmp_path) -> None:
    noise = (0.05 * rng.standard_normal((16000, 2))).astype(np.float32)
    profile = dsp.estimate_profile(noise, 16000, mode="head")
    uri = plots.plot_profile(profile, tmp_path / "profile.png")
    assert (tmp_path / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert uri.startswith("data:image/png;base64,")


def test_spectrograms_pool_to_about_the_pixels_keeping_mean_power_and_the_low_bins(rng: np.random.Generator) -> None:
    """A 15 s excerpt at 48 kHz (1406 frames, 513 bins) is drawn as at most 640 x 240 cells."""
    sample_rate, n_fft = 48000, 1024
    density = 10 * np.log10(rng.uniform(1e-6, 1.0, (n_fft // 2 + 1, 1406)))
    times = np.arange(density.shape[1] + 1) * 0.0107
    hertz = np.maximum(0.0, (np.arange(density.shape[0] + 1) - 0.5) * sample_rate / n_fft)
    pooled, pooled_times, pooled_hertz = plots.fit_to_cells(density, times, hertz, columns=640, rows=240)
    assert pooled.shape[1] <= 640 and pooled.shape[0] <= 240
    assert pooled.shape == (len(pooled_hertz) - 1, len(pooled_times) - 1)
    assert np.all(np.diff(pooled_times) > 0) and np.all(np.diff(pooled_hertz) > 0)
    assert pooled_times[[0, -1]].tolist() == times[[0, -1]].tolist() and pooled_hertz[[0, -1]].tolist() == hertz[[0, -1]].tolist()
    assert np.array_equal(pooled_hertz[1:6], hertz[2:7]), "0 Hz joins the first bin; the next, wider than a band, stay single"
    # Each cell is the mean power of what it pools, so the power over the whole plane (weighted by cell size) is kept.
    widths_t, widths_f = np.diff(pooled_times), np.diff(pooled_hertz)
    kept = np.sum(10 ** (pooled / 10) * widths_f[:, None] * widths_t[None, :])
    whole = np.sum(10 ** (density / 10) * np.diff(hertz)[:, None] * np.diff(times)[None, :])
    assert abs(kept / whole - 1) < 0.02


def test_a_figure_drawn_in_a_long_lived_process_leaves_little_to_the_cycle_collector(rng: np.random.Generator, tmp_path) -> None:
    """Where the steps are not isolated (``runtime.isolate_steps`` off, a Dask worker), each file's figures stay
    until one of Python's seldom full collections: emptied when saved, about 2-3 MiB a plot, not 8."""
    import gc

    import psutil
    import soundfile as sf

    for name in ("before", "after"):
        sf.write(tmp_path / f"{name}.wav", (0.05 * rng.standard_normal((48_000 * 20, 2))).astype(np.float32), 48_000, subtype="FLOAT")

    def draw(index: int) -> None:
        plots.plot_spectrograms(tmp_path / "before.wav", tmp_path / "after.wav", tmp_path / f"s{index}.png", start=0.0, seconds=10.0)

    draw(0)  # imports and caches
    gc.collect()
    gc.disable()
    try:
        before = psutil.Process().memory_info().rss
        for index in range(1, 5):
            draw(index)
        grown_mib = (psutil.Process().memory_info().rss - before) / 4 / 2**20
    finally:
        gc.enable()
        gc.collect()
    assert grown_mib < 6, f"{grown_mib:.1f} MiB a figure left to the cycle collector"
