"""Shared helpers for the DSP benchmarks: media, mixing, peers and scoring.

One way to do each thing: every benchmark loads the shared media, mixes noise
at a given SNR, runs the external peers (ffmpeg ``afftdn``, SoX ``noisered``)
and scores outputs through the functions here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from math import gcd
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]
def _media_dir() -> Path:
    """``$DESTATIC_MEDIA_DIR``, else the first ``shared/media`` beside the repository or a parent (worktrees)."""
    if "DESTATIC_MEDIA_DIR" in os.environ:
        return Path(os.environ["DESTATIC_MEDIA_DIR"])
    for parent in REPO_ROOT.parents:
        if (parent / "shared" / "media").is_dir():
            return parent / "shared" / "media"
    return REPO_ROOT.parent / "shared" / "media"


MEDIA_DIR = _media_dir()
OUT_DIR = REPO_ROOT / "benchmarks" / "out"

SPEECH_NOISES = ("AirConditioner_6", "VacuumCleaner_1", "CopyMachine_2")
SYNTHETIC_NOISES = ("white", "pink", "brown", "fan", "hum")
HUM_HZ = 50.0
HUM_HARMONICS = 10
FAN_BLADE_HZ = (90.0, 150.0)
"""Range of a fan's blade-pass frequency (drawn per mixture)."""
FAN_HARMONICS = 4
FAN_TONE_DB = -6.0
"""Power of the fan's tones relative to its broadband part."""
PEAK_LIMIT = 0.95
SI_SDR_FLOOR_DB = -50.0


def require_media() -> Path:
    """Return the shared media folder, or exit with a clear message if it is absent."""
    if not MEDIA_DIR.is_dir():
        sys.exit(f"shared media folder {MEDIA_DIR} is absent: the benchmarks need it")
    return MEDIA_DIR


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def sox_exe() -> str | None:
    """Path of the SoX binary, or ``None`` when SoX is not installed."""
    return shutil.which("sox")


def stable_seed(*parts: object) -> int:
    """A seed that depends only on ``parts`` (unlike ``hash``, stable across runs)."""
    return zlib.crc32("|".join(map(str, parts)).encode())


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the first axis with a polyphase filter (scipy).

    Parameters
    ----------
    audio : np.ndarray [shape=(frames,) or (frames, channels)]
    orig_sr, target_sr : int
        Sample rates in Hz.
    """
    if orig_sr == target_sr:
        return audio
    factor = gcd(orig_sr, target_sr)
    return scipy.signal.resample_poly(audio, target_sr // factor, orig_sr // factor, axis=0)


def load_mono(path: Path, *, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read a sound file as float64 mono, resampled to ``sample_rate`` if given.

    Returns
    -------
    audio : np.ndarray [shape=(frames,)]
    sample_rate : int
        The rate of ``audio`` in Hz (the file's own when ``sample_rate`` is None).
    """
    audio, file_rate = sf.read(path, dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)
    if sample_rate is None:
        return audio, file_rate
    return resample(audio, file_rate, sample_rate), sample_rate


def load_video_audio(
    path: Path, *, sample_rate: int, start_s: float = 0.0, end_s: float | None = None
) -> np.ndarray:
    """Decode a media file's audio as float64 mono at ``sample_rate`` (ffmpeg), optionally a stretch of it."""
    command = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1",
               "-ar", str(sample_rate), "-f", "f32le", "-"]
    samples = np.frombuffer(subprocess.run(command, capture_output=True, check=True).stdout, np.float32)
    start = int(round(start_s * sample_rate))
    stop = None if end_s is None else int(round(end_s * sample_rate))
    return samples[start:stop].astype(np.float64)


def _coloured_noise(frames: int, exponent: float, *, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power falls as ``f ** -exponent`` (0 white, 1 pink, 2 brown), shaped in one FFT."""
    spectrum = np.fft.rfft(rng.standard_normal(frames))
    frequencies = np.fft.rfftfreq(frames)
    frequencies[0] = frequencies[1] if frames > 1 else 1.0
    return np.fft.irfft(spectrum * frequencies ** (-exponent / 2), n=frames)


def synthetic_noise(kind: str, frames: int, sample_rate: int, *, rng: np.random.Generator) -> np.ndarray:
    """Unit-power synthetic steady noise of one of :data:`SYNTHETIC_NOISES`.

    ``white``, ``pink`` and ``brown``: Gaussian noise with power falling as
    ``f ** 0``, ``f ** -1`` and ``f ** -2``. ``fan``: pink broadband plus the
    blade-pass tone (a random frequency in :data:`FAN_BLADE_HZ`) and its
    harmonics at ``1/k``, the tones :data:`FAN_TONE_DB` under the broadband.
    ``hum``: harmonics 1..10 of 50 Hz (below Nyquist) with amplitudes 1/k and
    random phases, like mains hum picked up by a cable.
    """
    if kind in ("white", "pink", "brown"):
        noise = _coloured_noise(frames, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind], rng=rng)
    elif kind == "fan":
        broadband = _coloured_noise(frames, 1.0, rng=rng)
        t = np.arange(frames) / sample_rate
        blade = rng.uniform(*FAN_BLADE_HZ)
        tones = sum(
            np.sin(2 * np.pi * k * blade * t + rng.uniform(0, 2 * np.pi)) / k
            for k in range(1, FAN_HARMONICS + 1)
            if k * blade < sample_rate / 2
        )
        tones *= np.sqrt(np.mean(broadband**2) * 10 ** (FAN_TONE_DB / 10) / np.mean(tones**2))
        noise = broadband + tones
    elif kind == "hum":
        t = np.arange(frames) / sample_rate
        noise = np.zeros(frames)
        for k in range(1, HUM_HARMONICS + 1):
            if k * HUM_HZ < sample_rate / 2:
                noise += np.sin(2 * np.pi * k * HUM_HZ * t + rng.uniform(0, 2 * np.pi)) / k
    else:
        raise ValueError(f"kind={kind!r} must be one of {SYNTHETIC_NOISES}")
    return noise / np.sqrt(np.mean(noise**2))


def drifting_hum(
    frames: int,
    sample_rate: int,
    *,
    fundamental_hz: float,
    harmonics: int,
    rng: np.random.Generator,
    drift_hz: float = 0.1,
    drift_period_s: float = 20.0,
    decay: float = 1.0,
) -> np.ndarray:
    """Unit-power mains hum whose fundamental drifts slowly: harmonics 1..``harmonics`` at ``k ** -decay``, random phases.

    The fundamental moves sinusoidally by ``drift_hz`` either side of
    ``fundamental_hz`` over ``drift_period_s`` (from a random point of the
    cycle); every harmonic follows it, as the grid's do.
    """
    t = np.arange(frames) / sample_rate
    frequency = fundamental_hz + drift_hz * np.sin(2 * np.pi * t / drift_period_s + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(frequency) / sample_rate
    hum = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) * k**-decay for k in range(1, harmonics + 1))
    return hum / np.sqrt(np.mean(hum**2))


def noise_excerpt(noise: np.ndarray, frames: int, *, rng: np.random.Generator) -> np.ndarray:
    """``frames`` samples of ``noise`` from a random offset (tiled if it is too short)."""
    if len(noise) < frames:
        noise = np.tile(noise, frames // len(noise) + 1)
    start = int(rng.integers(0, len(noise) - frames + 1))
    return noise[start : start + frames]


def load_noise(name: str, frames: int, sample_rate: int, *, rng: np.random.Generator) -> np.ndarray:
    """``frames`` samples of a named noise at ``sample_rate``: a synthetic kind or a file in ``media/noise``."""
    if name in SYNTHETIC_NOISES:
        return synthetic_noise(name, frames, sample_rate, rng=rng)
    noise, _ = load_mono(MEDIA_DIR / "noise" / f"{name}.wav", sample_rate=sample_rate)
    return noise_excerpt(noise, frames, rng=rng)


def mix_at_snr(
    speech: np.ndarray, noise: np.ndarray, snr_db: float, *, lead_in: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Mix ``speech`` into ``noise`` after a noise-only lead-in, at a global SNR.

    The SNR is the speech power over the noise power in the speech region.
    Both outputs are scaled together so that the mixture peaks at most at 0.95.

    Parameters
    ----------
    speech : np.ndarray [shape=(n,)]
    noise : np.ndarray [shape=(lead_in + n,)]
    snr_db : float
    lead_in : int
        Samples of noise alone before the speech starts.

    Returns
    -------
    noisy, clean : np.ndarray [shape=(lead_in + n,)]
        The mixture and the clean speech on the same time axis (zeros in the lead-in).
    """
    if len(noise) != lead_in + len(speech):
        raise ValueError(f"len(noise)={len(noise)} must be lead_in + len(speech) = {lead_in + len(speech)}")
    clean = np.concatenate([np.zeros(lead_in), speech])
    speech_power = np.mean(speech**2)
    noise_power = np.mean(noise[lead_in:] ** 2)
    gain = np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    noisy = clean + gain * noise
    scale = min(1.0, PEAK_LIMIT / np.max(np.abs(noisy)))
    return noisy * scale, clean * scale


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019), zero-mean signals.

    A silent (constant) estimate scores ``SI_SDR_FLOOR_DB`` rather than NaN.
    """
    reference = reference - reference.mean()
    estimate = estimate - estimate.mean()
    if not np.any(estimate):
        return SI_SDR_FLOOR_DB
    target = reference * (np.dot(estimate, reference) / np.dot(reference, reference))
    distortion = estimate - target
    return float(10 * np.log10(np.dot(target, target) / max(np.dot(distortion, distortion), 1e-20)))


def estimate_lag(reference: np.ndarray, estimate: np.ndarray, *, max_lag: int) -> int:
    """Delay of ``estimate`` behind ``reference`` in samples (cross-correlation peak).

    Positive means ``estimate`` comes late; searched within +-``max_lag``.
    """
    frames = min(len(reference), len(estimate))
    correlation = scipy.signal.correlate(estimate[:frames], reference[:frames], mode="full", method="fft")
    lags = scipy.signal.correlation_lags(frames, frames, mode="full")
    window = np.abs(lags) <= max_lag
    return int(lags[window][np.argmax(np.abs(correlation[window]))])


def advance(audio: np.ndarray, lag: int, frames: int) -> np.ndarray:
    """Undo a delay of ``lag`` samples and return exactly ``frames`` samples (zero-padded)."""
    shifted = audio[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag), audio])
    shifted = shifted[:frames]
    return np.pad(shifted, (0, frames - len(shifted)))


def score(clean: np.ndarray, output: np.ndarray, sample_rate: int) -> dict[str, float]:
    """PESQ (wide-band at 16 kHz, narrow-band at 8 kHz), STOI and SI-SDR of ``output``.

    A PESQ failure or NaN (e.g. a silent output) scores 1.0, the bottom of the
    scale, and is counted in ``pesq_failed``.
    """
    from pesq import PesqError, pesq
    from pystoi import stoi

    modes = {16000: "wb", 8000: "nb"}
    if sample_rate not in modes:
        raise ValueError(f"sample_rate={sample_rate} must be one of {sorted(modes)} for PESQ")
    quality = pesq(sample_rate, clean, output, modes[sample_rate], on_error=PesqError.RETURN_VALUES)
    failed = not np.isfinite(quality) or quality < 0
    return {
        "pesq": 1.0 if failed else float(quality),
        "stoi": float(stoi(clean, output, sample_rate, extended=False)),
        "si_sdr": si_sdr(clean, output),
        "pesq_failed": float(failed),
    }


def _write_float_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    sf.write(path, audio.astype(np.float32), sample_rate, subtype="FLOAT")


def _read_like(path: Path, channels: int) -> np.ndarray:
    output, _ = sf.read(path, dtype="float64", always_2d=True)
    return output[:, 0] if channels == 1 else output


def run_afftdn(
    audio: np.ndarray,
    sample_rate: int,
    *,
    options: str = "nr=24:nf=-30",
    learn_seconds: tuple[float, float] | None = None,
) -> np.ndarray:
    """Denoise with ffmpeg's ``afftdn`` through float WAV files; the output keeps afftdn's delay.

    Parameters
    ----------
    audio : np.ndarray [shape=(frames,) or (frames, channels)]
    sample_rate : int
    options : str
        The ``afftdn`` options.
    learn_seconds : (float, float) or None
        Learn the noise profile from this stretch (``sample_noise`` start/stop
        sent by ``asendcmd``); None keeps afftdn's own profile.
    """
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    with tempfile.TemporaryDirectory(prefix="destatic-bench-") as tmp:
        source, target = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        _write_float_wav(source, audio, sample_rate)
        graph = f"afftdn={options}"
        if learn_seconds is not None:
            commands = Path(tmp) / "commands.txt"
            start, stop = learn_seconds
            commands.write_text(f"{start} afftdn sample_noise start;\n{stop} afftdn sample_noise stop;\n")
            graph = f"asendcmd=f={commands}," + graph
        subprocess.run(
            [ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(source), "-af", graph, "-c:a", "pcm_f32le", str(target)],
            check=True,
        )
        return _read_like(target, channels)


def run_noisered(
    audio: np.ndarray, sample_rate: int, *, profile_seconds: tuple[float, float], amount: float = 0.21
) -> np.ndarray:
    """Denoise with SoX ``noisered`` using a ``noiseprof`` of ``profile_seconds`` of the input."""
    sox = sox_exe()
    if sox is None:
        raise RuntimeError("SoX is not installed (apt-get install sox)")
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    start, stop = profile_seconds
    with tempfile.TemporaryDirectory(prefix="destatic-bench-") as tmp:
        source, target, profile = Path(tmp) / "in.wav", Path(tmp) / "out.wav", Path(tmp) / "noise.prof"
        _write_float_wav(source, audio, sample_rate)
        run = {"check": True, "capture_output": True}
        subprocess.run([sox, str(source), "-n", "trim", str(start), str(stop - start), "noiseprof", str(profile)], **run)
        subprocess.run(
            [sox, str(source), "-e", "floating-point", "-b", "32", str(target), "noisered", str(profile), str(amount)], **run
        )
        return _read_like(target, channels)


def speech_noise_blocks(
    minutes: float, *, sample_rate: int = 48000, channels: int = 2, snr_db: float = 10.0, block_seconds: float = 10.0
) -> Iterator[np.ndarray]:
    """Yield ``minutes`` of real speech tiled over real noise, block by block (float32).

    The LibriSpeech files and the air-conditioner noise are resampled to
    ``sample_rate``; each channel starts at its own offset, so channels differ.
    Memory stays at one block whatever the duration.

    Yields
    ------
    block : np.ndarray [shape=(frames, channels), dtype=float32]
    """
    speech = np.concatenate(
        [load_mono(path, sample_rate=sample_rate)[0] for path in sorted((MEDIA_DIR / "speech").glob("*.flac"))]
    )
    noise, _ = load_mono(MEDIA_DIR / "noise" / "AirConditioner_6.wav", sample_rate=sample_rate)
    noise *= np.sqrt(np.mean(speech**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    total = int(round(minutes * 60 * sample_rate))
    block = int(block_seconds * sample_rate)
    offsets = [(len(speech) * c) // channels for c in range(channels)]
    position = 0
    while position < total:
        frames = min(block, total - position)
        index = position + np.arange(frames)
        out = np.empty((frames, channels), dtype=np.float32)
        for c, offset in enumerate(offsets):
            out[:, c] = speech[(index + offset) % len(speech)] + noise[(index + 3 * offset) % len(noise)]
        yield out * np.float32(0.5)
        position += frames


def write_speech_noise_wav(path: Path, minutes: float, *, sample_rate: int = 48000, channels: int = 2) -> Path:
    """Write :func:`speech_noise_blocks` to a 16-bit WAV file block by block and return its path."""
    with sf.SoundFile(path, "w", samplerate=sample_rate, channels=channels, subtype="PCM_16") as out:
        for block in speech_noise_blocks(minutes, sample_rate=sample_rate, channels=channels):
            out.write(block)
    return path


def denoise_file_streaming(source: Path, target: Path, *, block_frames: int = 65536, **kwargs: object) -> None:
    """Denoise a sound file into a 16-bit WAV block by block through ``destatic.dsp.denoise_stream``.

    ``kwargs`` go to ``denoise_stream`` (``noise``, ``method``, options).
    """
    from destatic.dsp import denoise_stream

    info = sf.info(source)
    blocks = sf.blocks(source, blocksize=block_frames, dtype="float32", always_2d=True)
    with sf.SoundFile(target, "w", samplerate=info.samplerate, channels=info.channels, subtype="PCM_16") as out:
        for block in denoise_stream(blocks, info.samplerate, **kwargs):
            out.write(np.clip(block, -1.0, 1.0))


def denoise_file_in_memory(source: Path, target: Path, **kwargs: object) -> dict[str, float]:
    """Read a whole file, ``destatic.denoise`` it, write a 16-bit WAV; return the seconds of each step."""
    import time

    import destatic

    began = time.perf_counter()
    audio, sample_rate = sf.read(source, dtype="float32", always_2d=True)
    read = time.perf_counter()
    output = destatic.denoise(audio, sample_rate, **kwargs)
    computed = time.perf_counter()
    sf.write(target, np.clip(output, -1.0, 1.0), sample_rate, subtype="PCM_16")
    written = time.perf_counter()
    return {"read": read - began, "denoise": computed - read, "write": written - computed}
