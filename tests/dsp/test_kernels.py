"""The compiled frame loops against the numpy oracle (``dsp_reference.py``), on random spectra and on real media."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import destatic
from destatic.dsp import compute_gains, denoise_stream, resolve_profile
from destatic.dsp.methods import build_options
from destatic.dsp.subtract import rule_for
from destatic.dsp.noise import NoiseTracker
from destatic.dsp.profile import NoiseProfile
from destatic.dsp.stft import FrameSplitter, OverlapAdder

import dsp_reference as reference

PACKAGE = Path(destatic.__file__).resolve().parent
CLASSIC = ("seed", "subtract", "wiener", "logmmse")
"""The methods the compiled loops run (the learned ones use ``logmmse``'s for their classic gain)."""

EXACT = ("wiener",)
"""Methods whose compiled gains are bit-identical to the oracle's: only +, -, *, /, min and max, in the same order.

``logmmse`` is too unless OM-LSA weighting is on (``exp`` and ``log`` round
differently); ``subtract`` derives ``alpha`` from a sum and ``log10``; a
drifting ceiling (measured profiles) takes numpy's quantile, whose
interpolation the loop repeats in float64.
"""


def _random_spectra(rng: np.random.Generator, channels: int, frames: int, bins: int, spread_db: float) -> np.ndarray:
    """Complex64 spectra whose power wanders over ``spread_db`` around 1, bin by bin and frame by frame."""
    level = 10 ** (rng.uniform(-spread_db, spread_db, (channels, frames, bins)) / 20)
    phase = rng.uniform(0, 2 * np.pi, (channels, frames, bins))
    return (level * np.exp(1j * phase)).astype(np.complex64)


def _split(frames: int, cuts: list[int]) -> list[slice]:
    bounds = sorted({0, frames, *(cut % (frames + 1) for cut in cuts)})
    return [slice(start, stop) for start, stop in zip(bounds, bounds[1:])]


OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "max_reduction_db": st.floats(0.1, 120.0),
        "sensitivity_db": st.floats(-20.0, 20.0),
        "smoothing": st.floats(0.0, 0.999),
        "freq_smoothing_hz": st.sampled_from([0.0, 100.0, 400.0]),
        "time_smoothing_ms": st.sampled_from([0.0, 5.0, 80.0]),
        "over_subtraction": st.one_of(st.none(), st.floats(1.0, 20.0)),
        "spectral_floor": st.floats(1e-6, 1.0),
        "track_noise": st.booleans(),
        "speech_absence": st.sampled_from([0.0, 0.2, 0.5, 0.95]),
        "profiled_ceiling_db": st.one_of(st.none(), st.floats(0.0, 20.0)),
        "drift_quantile": st.one_of(st.none(), st.floats(0.01, 0.9)),
        "auto_window_s": st.floats(0.2, 10.0),
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(CLASSIC),
    options=OPTIONS,
    channels=st.integers(1, 3),
    frames=st.integers(1, 90),
    framing=st.sampled_from([(8000, 64, 16), (16000, 256, 64), (48000, 512, 128), (16000, 128, 64)]),
    mode=st.sampled_from(["auto", "segment"]),
    spread_db=st.floats(0.0, 60.0),
    cuts=st.lists(st.integers(0, 200), max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_compiled_gains_agree_with_the_numpy_oracle(method, options, channels, frames, framing, mode, spread_db, cuts, seed):
    """Every method and option, random spectra, frames grouped differently: the same gains (bit for bit where promised)."""
    if method == "seed":
        options = {}
    sample_rate, n_fft, hop = framing
    rng = np.random.default_rng(seed)
    bins = n_fft // 2 + 1
    power = (10 ** rng.uniform(-2, 1, (channels, bins))).astype(np.float32)
    profile = NoiseProfile(power=power, magnitude=np.sqrt(power), sample_rate=sample_rate, n_fft=n_fft, hop_length=hop, mode=mode)
    spectra = _random_spectra(rng, channels, frames, bins, spread_db)
    settings_ = build_options(method, options)
    compiled = rule_for(profile, method, settings_)
    oracle = reference.GainComputer(profile, method, settings_)
    got = np.concatenate([compiled(spectra[:, part]) for part in _split(frames, cuts)], axis=1)
    expected = oracle(spectra)
    assert got.dtype == np.float32 and got.shape == expected.shape
    bounded = mode != "auto" and settings_.profiled_ceiling_db is not None and settings_.track_noise
    exact = not (bounded and settings_.drift_quantile is not None) and (
        method in EXACT
        or (method == "logmmse" and settings_.speech_absence == 0)
        or (method == "subtract" and settings_.over_subtraction is not None)
    )
    if exact:
        np.testing.assert_array_equal(got, expected)
    elif method == "subtract":
        # Its over-subtraction comes from the frame's SNR, summed in another order: an ulp there moves 1 - alpha / gamma
        # by about 1e-7, which the square root makes a relative error of up to 1e-3 in a gain just over the floor.
        np.testing.assert_allclose(got.astype(np.float64) ** 2, expected.astype(np.float64) ** 2, rtol=2e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)


@settings(max_examples=60, deadline=None)
@given(
    channels=st.integers(1, 3),
    frames=st.integers(1, 120),
    window_seconds=st.sampled_from([1.5, 8.0]),
    cuts=st.lists(st.integers(0, 200), max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_compiled_tracker_is_the_numpy_tracker_bit_for_bit(channels, frames, window_seconds, cuts, seed):
    rng = np.random.default_rng(seed)
    bins = 33
    initial = (10 ** rng.uniform(-2, 1, (channels, bins))).astype(np.float32)
    power = (initial[:, np.newaxis] * 10 ** rng.uniform(-2, 3, (channels, frames, bins))).astype(np.float32)
    framing = {"sample_rate": 8000, "n_fft": 64, "hop_length": 16, "window_seconds": window_seconds}
    compiled = NoiseTracker(initial, **framing)
    oracle = reference.NoiseTracker(initial, **framing)
    got = np.concatenate([compiled.update(power[:, part]) for part in _split(frames, cuts)], axis=1)
    np.testing.assert_array_equal(got, oracle.update(power))


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]) | st.floats(0.0, 1e4, width=32), min_size=1, max_size=300),
    fraction=st.floats(0.0, 1.0),
    guess=st.floats(0.0, 1e4, width=32) | st.just(float("nan")),
    spread=st.floats(1.0, 10.0, width=32, exclude_min=True),
    nan_at=st.none() | st.integers(0, 299),
)
def test_the_drift_quantile_sought_near_a_guess_is_the_one_among_all_bins(values, fraction, guess, spread, nan_at):
    """The band search of the tracker's bound finds the order statistics a sort finds, or says it did not (NaN: never)."""
    from destatic.dsp import _kernels

    ratios = np.array(values, np.float32)
    if nan_at is not None:
        ratios[nan_at % ratios.size] = np.nan
    k = min(int(fraction * ratios.size), ratios.size - 1)
    ordered = np.sort(ratios)
    below, above, inside = _kernels._order_pair_near(ratios.copy(), k, np.float32(guess), np.float32(spread), np.empty_like(ratios))
    low, high = np.float32(guess) / np.float32(spread), np.float32(guess) * np.float32(spread)
    if nan_at is not None or np.isnan(guess) or not low <= ordered[k] <= high:
        assert inside == -1
    else:
        assert inside >= 1
        assert below == ordered[k]
        assert above == ordered[min(k + 1, ratios.size - 1)]


@pytest.mark.parametrize(("n_fft", "hop", "centered"), [(64, 16, False), (256, 128, False), (2048, 512, True), (3072, 768, False)])
def test_framing_and_overlap_add_agree_with_the_numpy_oracle(n_fft, hop, centered, rng):
    audio = rng.standard_normal((20_000, 2)).astype(np.float32)
    framing = {"n_fft": n_fft, "hop_length": hop, "centered": centered}
    results = []
    for splitter_class, adder_class, block in ((FrameSplitter, OverlapAdder, 3001), (reference.FrameSplitter, reference.OverlapAdder, 5000)):
        splitter, adder = splitter_class(2, **framing), adder_class(2, **framing)
        spectra = [splitter.push(audio[i : i + block]) for i in range(0, audio.shape[0], block)] + [splitter.finish()]
        adder.limit = audio.shape[0]
        out, first = [], 0
        for chunk in spectra:
            frames = np.arange(first, first + chunk.shape[1], dtype=np.float32)[:, np.newaxis]
            gains = np.float32(0.5) + np.float32(0.5) * np.cos(frames + np.arange(chunk.shape[2], dtype=np.float32) / 7)
            out.append(adder.push(chunk * gains.astype(np.float32)))
            first += chunk.shape[1]
        out.append(adder.finish())
        results.append((np.concatenate(spectra, axis=1), np.concatenate(out)))
    (spectra, out), (expected_spectra, expected_out) = results
    np.testing.assert_array_equal(spectra, expected_spectra)
    assert out.shape == expected_out.shape == audio.shape
    np.testing.assert_allclose(out, expected_out, rtol=1e-5, atol=1e-6)


def test_streams_are_bit_identical_whatever_the_block_sizes_and_jobs(rng):
    audio = (0.1 * rng.standard_normal((48000 * 3, 2))).astype(np.float32)
    audio[48000:] += 0.3 * np.sin(2 * np.pi * 440 * np.arange(96000) / 48000)[:, np.newaxis].astype(np.float32)
    profile = resolve_profile(audio, 48000, (0.0, 1.0))
    outputs, gains = [], []
    for size, jobs in ((65536, 1), (1000, 1), (48000 * 3, 2), (7777, 2)):
        blocks = [audio[i : i + size] for i in range(0, audio.shape[0], size)]
        outputs.append(np.concatenate(list(denoise_stream(blocks, 48000, noise=profile, method="logmmse", n_jobs=jobs))))
        gains.append(np.concatenate(list(compute_gains(blocks, 48000, profile, method="logmmse", n_jobs=jobs)), axis=1))
    for out, gain in zip(outputs[1:], gains[1:]):
        np.testing.assert_array_equal(out, outputs[0])
        np.testing.assert_array_equal(gain, gains[0])
    assert outputs[0].shape == audio.shape


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mid=st.booleans(),
    ready=st.integers(1, 40),
    before=st.integers(0, 6),
    after=st.integers(0, 6),
    bins=st.integers(1, 300),
    tone_width=st.sampled_from([3, 5, 11, 21]),
    voice_mix=st.sampled_from([0.0, 0.5, 1.0]),
    lowering_floor=st.sampled_from([1e-4, 0.01, 0.0316, 0.3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_hybrids_mixing_loop_is_the_numpy_rule_bit_for_bit(mid, ready, before, after, bins, tone_width, voice_mix,
                                                                 lowering_floor, seed):
    """Gains over and under the profile, tones standing out, bins lowered to DFN3's gain or not (some of it under the
    lowering step's floor, the noise grown in some frames), frames near the kept ones' ends: numpy's gains to the bit."""
    from destatic.dsp import _mixing
    from destatic.dsp import learned as learned_module

    rng = np.random.default_rng(seed)
    channels, rows = (2, 1) if mid else (rng.integers(1, 4), None)
    rows = rows or channels
    kept = before + ready + after
    noise = 10 ** rng.uniform(-3, 0, (rows, bins))
    magnitude = np.sqrt(noise[:, np.newaxis, :] * 10 ** rng.uniform(-1.5, 2, (rows, kept, bins))).astype(np.float32)
    magnitude[:, :, rng.integers(0, bins, 3)] *= np.float32(30)  # tones
    learned = (10 ** rng.uniform(-4, 0, (rows, kept, bins))).astype(np.float32)
    classic = rng.uniform(1e-3, 1, (channels, ready, bins)).astype(np.float32)
    voice, region = rng.uniform(0, 1, (2, rows, ready)).astype(np.float32)
    region[rng.random(region.shape) < 0.3] = 0  # frames outside the voice region
    lowered = rng.random(bins) < 0.7
    drift = np.maximum(10 ** rng.uniform(-1, 1.5, (rows, ready)), 1.0)  # noise grown louder in some frames
    learned_ready = learned[:, before : before + ready]
    expected = reference.hybrid_mix(
        classic, learned_ready, magnitude, learned, before, noise, drift, voice, region, lowered, voice_mix, tone_width,
        lowering_floor,
    )
    got = np.empty_like(classic)
    constants = learned_module.mix_constants(voice_mix, tone_width, lowering_floor)
    _mixing.hybrid_mix(
        classic, np.log(classic), np.log(learned_ready), magnitude, learned, before, noise, drift, voice, region, lowered, constants, got
    )
    np.testing.assert_array_equal(got, expected)


def test_exp_and_log_are_within_an_ulp_or_two():
    from destatic.dsp import _numba

    x = np.linspace(-87.0, 88.0, 400_001).astype(np.float32)
    got = np.empty_like(x)
    _numba.exp_into(x, got)
    exact = np.exp(x.astype(np.float64))
    assert (np.abs(got - exact) / np.spacing(exact.astype(np.float32))).max() <= 1.0
    y = np.exp(np.linspace(np.log(1e-37), np.log(1e37), 400_001)).astype(np.float32)
    _numba.log_into(y, got)
    exact = np.log(y.astype(np.float64))
    ulp = np.spacing(np.maximum(np.abs(exact), 1e-30).astype(np.float32))
    assert (np.abs(got - exact) / ulp).max() <= 2.0



def test_exp_to_float32_gives_libms_float32_bits_even_next_to_a_rounding_midpoint():
    """Random arguments, every kind of edge, and exps that land within an ulp of a float32 midpoint (where a fast exp
    a few float64 ulp off would round the other way): libm's float64 exp rounded to float32, bit for bit."""
    import math

    from destatic.dsp import _numba

    rng = np.random.default_rng(5)
    below = np.exp(rng.uniform(-86, 87, 50_000)).astype(np.float32)
    midpoints = (below.astype(np.float64) + np.nextafter(below, np.float32(np.inf)).astype(np.float64)) / 2
    edges = [0.0, -0.0, -86.99, -87.0, -87.5, 87.99, 88.0, 88.8, -708.0, 709.0, -1e4, 1e4, np.nan, np.inf, -np.inf]
    x = np.concatenate([rng.uniform(-30, 2, 200_000), rng.uniform(-700, 700, 50_000), np.log(midpoints), edges])
    got = np.empty(x.size, np.float32)
    _numba.exp_to_float32(x, got)
    with np.errstate(over="ignore"):
        expected = np.array([math.inf if v >= 710 else math.exp(v) for v in x], np.float64).astype(np.float32)
    assert np.array_equal(got, expected, equal_nan=True)


def _relative_db(output: np.ndarray, expected: np.ndarray) -> float:
    return float(10 * np.log10(np.sum((output - expected) ** 2) / np.sum(expected**2) + 1e-300))


def _decoded(path: Path, target: Path, seconds: float) -> tuple[np.ndarray, int]:
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-t", str(seconds), "-i", str(path), "-vn", "-c:a", "pcm_f32le", str(target)],
        check=True,
    )
    return sf.read(target, dtype="float32", always_2d=True)


@pytest.fixture(scope="module")
def real_media(media_dir, tmp_path_factory):
    """Speech over car noise (8 kHz NOIZEUS), and the piano and film score of two videos (48 kHz stereo, 12 s)."""
    folder = tmp_path_factory.mktemp("media")
    noisy, rate = sf.read(media_dir / "pairs" / "noizeus" / "sp01_car_sn5.wav", dtype="float32", always_2d=True)
    clips = {"noizeus": (noisy, rate)}
    for name in ("chaplin.mp4", "big_buck_bunny_0_30.webm"):
        clips[name] = _decoded(media_dir / "video" / name, folder / f"{name}.wav", 12.0)
    return clips


@pytest.mark.parametrize("method", CLASSIC)
@pytest.mark.parametrize("noise", [None, (0.0, 0.5)], ids=["auto", "measured"])
def test_every_method_on_real_media_is_within_80_db_of_the_numpy_oracle(real_media, method, noise):
    for name, (audio, rate) in real_media.items():
        profile = resolve_profile(audio, rate, noise, method=method)
        options = {} if method == "seed" else {"freq_smoothing_hz": 60.0, "time_smoothing_ms": 10.0} if method == "subtract" else {}
        expected = reference.denoise(audio, rate, profile, method=method, **options)
        for residue in (False, True):
            got = destatic.denoise(audio, rate, noise=profile, method=method, residue=residue, **options)
            assert got.shape == audio.shape, name
            target = audio - expected if residue else expected
            assert _relative_db(got, target) < -80.0, (name, residue)


def test_cache_folder_is_the_users_or_numbas_named_by_the_sources(monkeypatch, tmp_path):
    from destatic.dsp import _numba

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(_numba._numba_config, "CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = _numba.cache_folder()
    assert folder.parent == tmp_path / "xdg" / "destatic" / "numba" and folder.is_dir()
    assert len(folder.name) == 16 and folder.name == _numba._CACHE_FOLDER.name  # the same sources, the same digest
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "chosen"))
    assert _numba.cache_folder() == tmp_path / "chosen" / folder.name
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(blocked / "numba"))
    assert _numba.cache_folder() is None


def test_another_versions_cache_unused_for_a_month_is_removed_and_a_recent_one_kept(tmp_path, monkeypatch):
    from destatic.dsp import _numba

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    month_ago = time.time() - _numba.STALE_AFTER_S - 3600
    for name in ("0123456789abcdef", "dfn3-0123456789abcdef", "fedcba9876543210", "keep-me-0123456789abcdef", "notes"):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (month_ago, month_ago))
    (tmp_path / "1111111111111111").mkdir()  # another version, used lately
    folder = _numba.cache_folder()
    left = sorted(path.name for path in tmp_path.iterdir())
    assert left == sorted(["1111111111111111", folder.name, "dfn3-0123456789abcdef", "keep-me-0123456789abcdef", "notes"])
    _numba.cache_subfolder("dfn3-fedcba9876543210")
    assert not (tmp_path / "dfn3-0123456789abcdef").exists() and (tmp_path / "1111111111111111").is_dir()


FRESH_PROCESS = """
import numpy as np, destatic
from destatic.dsp import _kernels
destatic.denoise(np.random.default_rng(0).standard_normal((48000, 2)).astype(np.float32) * 0.1, 48000, noise=(0, 0.5), method="logmmse")
destatic.denoise(np.zeros(20000, np.float32), 16000, method="subtract")
misses = {name: sum(getattr(_kernels, name).stats.cache_misses.values()) for name in ("suppression_gains", "frames_into", "overlap_add")}
hits = {name: sum(getattr(_kernels, name).stats.cache_hits.values()) for name in ("suppression_gains", "frames_into", "overlap_add")}
print(misses, hits)
"""


def test_a_second_process_loads_the_compiled_loops_from_the_cache_outside_the_package():
    """This process has compiled (or loaded) the loops: a fresh one loads them from the cache, compiling nothing."""
    from destatic.dsp import _numba

    destatic.denoise(np.zeros((48000, 2), np.float32), 48000, noise=(0, 0.5), method="logmmse")
    destatic.denoise(np.zeros(20000, np.float32), 16000, method="subtract")
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True, check=True, env=os.environ.copy())
    misses, hits = _parse(done.stdout)
    assert all(count == 0 for count in misses.values()), misses
    assert all(count > 0 for count in hits.values()), hits
    folder = _numba.cache_folder()
    assert folder is not None and any(folder.rglob("*.nbi"))
    assert not list(PACKAGE.rglob("*.nbi")) and not list(PACKAGE.rglob("*.nbc"))


def _parse(stdout: str) -> tuple[dict, dict]:
    import ast

    first, second = stdout.strip().split("} {")
    return ast.literal_eval(first + "}"), ast.literal_eval("{" + second)


def _float32_samples(rng: np.random.Generator) -> np.ndarray:
    """Float32 values by bit pattern: anywhere, dense over half precision's range, and at every rounding tie (NaNs left out)."""
    anywhere = rng.integers(0, 2**32, 500_000, dtype=np.uint64).astype(np.uint32)
    dense = rng.integers(0x30000000, 0x48000000, 1_000_000, dtype=np.int64).astype(np.uint32)
    ties = np.arange(0x33000000, 0x47800000, 0x1000, dtype=np.int64).astype(np.uint32)
    signs = np.uint32(0x80000000) * rng.integers(0, 2, ties.size, dtype=np.uint32)
    values = np.concatenate([anywhere, dense, ties | signs, ties + 1, ties - 1]).view(np.float32)
    return values[~np.isnan(values)]


@pytest.mark.parametrize("software", [False, True], ids=["cpu", "software"])
def test_half_precision_conversions_round_as_numpy_does(software, rng):
    from destatic.dsp import _numba

    to_half = _numba.software_halves_into if software else _numba.halves_into
    to_float = _numba.software_floats_of_halves if software else _numba.floats_of_halves
    values = _float32_samples(rng)
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).view(np.uint16)
    halves = np.empty(values.shape, np.uint16)
    to_half(values, halves)
    np.testing.assert_array_equal(halves, expected)
    every = np.arange(65536, dtype=np.uint16)
    every = every[~np.isnan(every.view(np.float16))]
    floats = np.empty(every.shape, np.float32)
    to_float(every, floats)
    np.testing.assert_array_equal(floats.view(np.uint32), every.view(np.float16).astype(np.float32).view(np.uint32))


def test_stored_gains_and_their_application_match_numpys_casts(rng):
    from destatic.dsp.gain_file import as_stored
    from destatic.dsp.inverse import _apply

    gains = rng.uniform(0.0, 1.0, (2, 50, 33)).astype(np.float32)
    stored = as_stored(gains[1], np.dtype(np.float16))
    assert stored.dtype == np.float16 and stored.flags.c_contiguous
    np.testing.assert_array_equal(stored.view(np.uint16), gains[1].astype(np.float16).view(np.uint16))
    halves = gains.astype(np.float16)
    spectra = _random_spectra(rng, 2, 50, 33, 20.0)
    for residue in (False, True):
        widened = halves.astype(np.float32)
        expected = spectra * ((1 - widened) if residue else widened)
        np.testing.assert_array_equal(_apply(spectra[:, 10:40].copy(), halves[:, 10:40], residue), expected[:, 10:40])


def test_exp1_is_scipys_to_1e_13_and_the_logmmse_table_unchanged():
    """The table of exp(E1/2) that logmmse reads is built without scipy.special, to the same float32 values."""
    import scipy.special

    from destatic.dsp.gains import exp1

    x = np.concatenate([np.geomspace(1e-9, 700.0, 20001), [1.0, np.nextafter(1.0, 2.0)]])
    assert np.max(np.abs(exp1(x) / scipy.special.exp1(x) - 1)) < 1e-13
    from destatic.dsp.gains import _half_exp1_table

    table, first = _half_exp1_table()
    shift = 23 - 10
    patterns = ((first + np.arange(table.size, dtype=np.int64)) << shift) + (1 << (shift - 1))
    centres = patterns.astype(np.int32).view(np.float32).astype(np.float64)
    assert np.array_equal(table, np.exp(0.5 * scipy.special.exp1(centres)).astype(np.float32))


def _numpy_gru(projected: np.ndarray, recurrent: np.ndarray, bias: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """ONNX's GRU (z, r, h; linear_before_reset) in float64 from its input's projection: the oracle of ``gru_steps``."""
    size = hidden.size
    out, h = [], hidden.astype(np.float64)
    for row in projected.astype(np.float64):
        product = recurrent.astype(np.float64) @ h + bias
        update = 1 / (1 + np.exp(-(row[:size] + product[:size])))
        reset = 1 / (1 + np.exp(-(row[size : 2 * size] + product[size : 2 * size])))
        candidate = np.tanh(row[2 * size :] + reset * product[2 * size :])
        h = (1 - update) * candidate + update * h
        out.append(h)
    return np.array(out)


def test_the_gru_kernel_is_onnxs_gru_with_its_recurrent_weights_in_half_precision(rng):
    from destatic.dsp._kernels import gru_steps

    size, frames = 64, 40
    recurrent = (rng.standard_normal((3 * size, size)) / np.sqrt(size)).astype(np.float16)
    bias = rng.standard_normal(3 * size).astype(np.float32) * 0.1
    projected = rng.standard_normal((frames, 3 * size)).astype(np.float32) * 3  # saturates some gates
    hidden = rng.uniform(-1, 1, size).astype(np.float32)
    expected = _numpy_gru(projected, recurrent, bias, hidden)
    out = np.empty((frames, size), np.float32)
    state = hidden.copy()
    gru_steps(projected, recurrent.view(np.uint16), bias, state, out)
    assert np.abs(out - expected).max() < 1e-5
    assert np.array_equal(state, out[-1])
    again = np.empty((frames - 15, size), np.float32)
    state = out[14].copy()
    gru_steps(projected[15:], recurrent.view(np.uint16), bias, state, again)
    assert np.array_equal(again, out[15:])  # the state carries from one call to the next
