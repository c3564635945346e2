"""Long AAC audio encoded by several ffmpeg processes and spliced: same length, sync and quality as one encode."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from destatic import media
from destatic.errors import BadInputError, ParameterError
from destatic.media import _aac_segments, _ffmpeg
from media_checks import MEDIA_DIR, aligned_snr_db, decode, ffmpeg, packets_md5
from processes import child_pids

FRAME = 1024
SPEECH_FILES = sorted((MEDIA_DIR / "speech").glob("*.decoded.flac"))


def naive_splits(frames: int, jobs: int) -> list[int]:
    """Frame indices of the even split of `frames` samples among `jobs` encoders."""
    blocks = -(-frames // FRAME)
    return [round(i * blocks / jobs) for i in range(1, jobs)]


def bursts(length: int, rng: np.random.Generator) -> np.ndarray:
    """A castanet-like click: decaying white noise."""
    return rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 6))


def tones_with_clicks_at_splits(sample_rate: int = 48000, seconds: float = 30.0, jobs: int = 3) -> np.ndarray:
    """Stereo tones over a noise floor, with sharp clicks right on the naive split points."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    audio = np.stack([0.2 * np.sin(2 * np.pi * 440 * t), 0.15 * np.sin(2 * np.pi * (330 + 20 * np.sin(t)) * t)], axis=1)
    audio += 0.01 * rng.standard_normal(audio.shape)
    for split in naive_splits(len(t), jobs):
        at = split * FRAME - 200
        audio[at : at + 400] += 0.8 * bursts(400, rng)[:, None]
    return audio.astype(np.float32)


def castanets(sample_rate: int = 44100, seconds: float = 24.0) -> np.ndarray:
    """Stereo bursts every 0.23 s over a chord: transients everywhere, splits included."""
    rng = np.random.default_rng(11)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    chord = sum(0.08 * np.sin(2 * np.pi * f * t) for f in (196, 247, 294))
    audio = np.stack([chord, chord], axis=1)
    for at in range(0, len(t) - 2000, int(0.23 * sample_rate)):
        audio[at : at + 2000, 0] += 0.6 * bursts(2000, rng)
        audio[at : at + 2000, 1] += 0.5 * bursts(2000, rng)
    return audio.astype(np.float32)


def speech() -> np.ndarray:
    if not SPEECH_FILES:
        pytest.skip(f"no LibriSpeech files in {MEDIA_DIR / 'speech'}")
    return np.concatenate([sf.read(path, dtype="float32", always_2d=True)[0] for path in SPEECH_FILES])


def block_snr_db(reference: np.ndarray, decoded: np.ndarray) -> np.ndarray:
    """SNR (dB) of each whole 1024-sample block of `decoded` against `reference`."""
    blocks = len(reference) // FRAME
    ref = reference[: blocks * FRAME].reshape(blocks, FRAME, -1).astype(np.float64)
    err = decoded[: blocks * FRAME].reshape(blocks, FRAME, -1) - ref
    return 10 * np.log10((np.sum(ref**2, axis=(1, 2)) + 1e-12) / (np.sum(err**2, axis=(1, 2)) + 1e-12))


def packet_times(path: Path, spec: str) -> list[str]:
    """pts, dts and duration of every packet of stream `spec` (bare ffmpeg's framecrc)."""
    lines = ffmpeg("-i", path, "-map", spec, "-c", "copy", "-f", "framecrc", "-").decode().splitlines()
    return [",".join(line.split(",")[1:4]) for line in lines if not line.startswith("#")]


@pytest.mark.parametrize(
    ("make", "rate", "jobs", "bitrate"),
    [
        (tones_with_clicks_at_splits, 48000, 3, 192_000),
        (castanets, 44100, 2, 192_000),
        (speech, 16000, 2, 64_000),
    ],
    ids=["clicks-on-splits", "castanets", "speech"],
)
def test_splices_are_gapless_aligned_and_clean(tmp_path: Path, make, rate: int, jobs: int, bitrate: int) -> None:
    audio = make()
    source = tmp_path / "source.wav"
    sf.write(source, audio, rate, subtype="FLOAT")
    frames, channels = audio.shape
    single = media.export_audio(source, tmp_path / "single.m4a", bitrate=bitrate, n_jobs=1)
    spliced_m4a = tmp_path / "spliced.m4a"
    with _aac_segments.parallel_aac(
        source, spliced_m4a, muxer="ipod", frames=frames, sample_rate=rate, channels=channels, bitrate=bitrate, n_jobs=jobs
    ) as spliced:
        assert spliced is not None and len(spliced.splices) == jobs - 1
        ffmpeg("-i", spliced.path, "-map", "0:0", "-c", "copy", *spliced.timestamp_args(0), "-f", "ipod", spliced_m4a)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["single.m4a", "source.wav", "spliced.m4a"]
    # The public path writes those very packets, with those timestamps.
    exported = media.export_audio(source, tmp_path / "exported.m4a", bitrate=bitrate, n_jobs=jobs)
    assert packets_md5(exported, "0:a") == packets_md5(spliced_m4a, "0:a")
    assert packet_times(exported, "0:a") == packet_times(single, "0:a")

    one, many = decode(single), decode(spliced_m4a)
    assert len(many) == len(one) == frames
    snr_one, lag_one = aligned_snr_db(audio, one)
    snr_many, lag_many = aligned_snr_db(audio, many)
    assert lag_one == lag_many == 0
    assert snr_many > snr_one - 1.0
    for start, end in zip([0, *spliced.splices], [*spliced.splices, None], strict=True):
        part = slice(start * FRAME, None if end is None else end * FRAME)
        assert aligned_snr_db(audio[part], many[part], max_lag=64)[1] == 0, f"segment from frame {start} is shifted"

    blocks_one, blocks_many = block_snr_db(audio, one), block_snr_db(audio, many)
    median = float(np.median(blocks_many))
    for packet in spliced.splices:
        around = slice(packet - 3, packet + 3)  # packet g decodes block g - 1
        floor = np.minimum(median, blocks_one[around]) - 3.0
        assert np.all(blocks_many[around] >= floor), (packet, blocks_many[around], blocks_one[around], median)
    if make is tones_with_clicks_at_splits:
        for packet, split in zip(spliced.splices, naive_splits(frames, jobs), strict=True):
            assert abs(packet - split) > 1, "spliced on the click"


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 s of small h264 video with stereo aac audio that starts 0.3 s after the video."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=160x90:rate=25:duration=36",
        "-itsoffset", "0.3", "-f", "lavfi",
        "-i", "aevalsrc=0.3*sin(2*PI*(200+40*t)*t)+0.02*(random(0)-0.5)|0.2*sin(2*PI*550*t):s=48000:d=35.5",
        "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "160k", path,
    )
    return path


@pytest.mark.parametrize(("suffix", "parallel"), [(".mp4", True), (".mov", True), (".ts", True), (".mkv", False)])
def test_remux_keeps_sync_and_timestamps(long_video: Path, tmp_path: Path, suffix: str, parallel: bool) -> None:
    track = media.extract_audio(long_video, tmp_path / "audio.wav")
    assert track.offset == pytest.approx(0.3, abs=0.03)
    one = media.remux(long_video, track.path, tmp_path / f"one{suffix}", n_jobs=1)
    many = media.remux(long_video, track.path, tmp_path / f"many{suffix}", n_jobs=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["audio.wav", one.name, many.name])
    assert packets_md5(many, "0:v") == packets_md5(one, "0:v")
    assert (packets_md5(many, "0:a") == packets_md5(one, "0:a")) is not parallel, "mkv keeps the single encode"
    assert packet_times(many, "0:a") == packet_times(one, "0:a")
    before, after = media.probe(one), media.probe(many)
    assert after.default_audio_stream.start_time == before.default_audio_stream.start_time
    assert after.video_streams[0].start_time == before.video_streams[0].start_time
    assert (after.default_audio_stream.codec, after.default_audio_stream.bitrate) == ("aac", before.default_audio_stream.bitrate)
    decoded_one, decoded_many = decode(one), decode(many)
    assert len(decoded_many) == len(decoded_one)
    snr, lag = aligned_snr_db(decoded_one, decoded_many)
    assert lag == 0 and snr > 15


def test_short_audio_and_other_codecs_keep_one_encoder(tmp_path: Path) -> None:
    audio = tones_with_clicks_at_splits(seconds=20.0)
    source = tmp_path / "source.wav"
    sf.write(source, audio, 48000, subtype="FLOAT")
    assert _aac_segments.encoder_jobs(len(audio), 48000, 2) == 1, "20 s is below two 20 s segments"
    automatic = media.export_audio(source, tmp_path / "auto.m4a")
    one = media.export_audio(source, tmp_path / "one.m4a", n_jobs=1)
    assert packets_md5(automatic, "0:a") == packets_md5(one, "0:a")
    for name in ("x.mp3", "x.opus"):
        forced = media.export_audio(source, tmp_path / f"forced-{name}", n_jobs=3)
        plain = media.export_audio(source, tmp_path / f"plain-{name}", n_jobs=1)
        assert packets_md5(forced, "0:a") == packets_md5(plain, "0:a"), name
    flac = media.export_audio(source, tmp_path / "source.flac")
    from_flac = media.export_audio(flac, tmp_path / "from-flac.m4a", n_jobs=3)
    assert packets_md5(from_flac, "0:a") == packets_md5(media.export_audio(flac, tmp_path / "from-flac-1.m4a", n_jobs=1), "0:a")


def test_encoder_count() -> None:
    minute = 60 * 48000
    cpus = len(os.sched_getaffinity(0))
    assert _aac_segments.encoder_jobs(10 * minute, 48000, 2) == min(cpus, _aac_segments.MAX_JOBS)
    assert _aac_segments.encoder_jobs(10 * minute, 48000, 6) == 1, "5.1 packets hold several elements"
    assert _aac_segments.encoder_jobs(10 * minute, 44056, 2) == 1, "not an AAC rate"
    assert _aac_segments.encoder_jobs(10 * minute, 48000, 1, n_jobs=3) == 3
    assert _aac_segments.encoder_jobs(3 * 48000, 48000, 1, n_jobs=3) == 1, "3 s leaves no room for a splice search"
    for bad in (0, -1, 2.0, True, "2"):
        with pytest.raises(ParameterError, match=f"n_jobs={bad!r} must be None"):
            _aac_segments.encoder_jobs(minute, 48000, 2, n_jobs=bad)


def test_one_cpu_keeps_one_encoder() -> None:
    """The real affinity mask of this process, narrowed to one CPU and restored."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        assert _aac_segments.encoder_jobs(10 * 60 * 48000, 48000, 2) == 1
    finally:
        os.sched_setaffinity(0, allowed)


def _wrapper(folder: Path, body: str) -> Path:
    """An ffmpeg that runs `body` for segment encodes (they write ADTS) and is the real one otherwise."""
    script = folder / "ffmpeg-wrapper"
    script.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" adts "*) ;; *) exec "' + _ffmpeg.ffmpeg_exe() + '" "$@";; esac\n'
        + body
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _wait_for(pid_file: Path) -> str:
    """Shell commands that wait until the first segment's wrapper has written its PID."""
    return f'while [ ! -s "{pid_file}" ]; do sleep 0.02; done;'


def _assert_gone(pid_file: Path) -> None:
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture
def long_wav(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "source.wav"
    path.parent.mkdir()
    sf.write(path, tones_with_clicks_at_splits(seconds=20.0), 48000, subtype="FLOAT")
    return path


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="binding needs at least 2 usable CPUs")
@pytest.mark.parametrize("extra", [0, 1])
def test_one_encoder_per_cpu_is_bound_to_it(tmp_path: Path, long_wav: Path, monkeypatch: pytest.MonkeyPatch, extra: int) -> None:
    """As many encoders as usable CPUs: each on its own; one more: none bound (the scheduler spreads them)."""
    cpus = sorted(os.sched_getaffinity(0))
    masks = tmp_path / "masks"
    masks.mkdir()
    body = f'sleep 0.3; grep Cpus_allowed_list /proc/self/status > "{masks}/$$"\nexec "{_ffmpeg.ffmpeg_exe()}" "$@"\n'
    monkeypatch.setenv(_ffmpeg.FFMPEG_ENV, str(_wrapper(tmp_path, body)))
    media.export_audio(long_wav, tmp_path / "x.m4a", n_jobs=len(cpus) + extra)
    seen = sorted(path.read_text().split()[-1] for path in masks.iterdir())
    if extra:
        unbound = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("Cpus_allowed_list"))
        assert seen == [unbound.split()[-1]] * (len(cpus) + 1)
    else:
        assert seen == sorted(str(cpu) for cpu in cpus)


def test_failed_segment_stops_the_others_and_leaves_nothing(tmp_path: Path, long_wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pid_file = tmp_path / "first.pid"
    body = (
        f'case " $* " in *" -ss "*) {_wait_for(pid_file)} echo "Invalid data found when processing input" >&2; exit 1;; esac\n'
        f'echo $$ > "{pid_file}"\nexec sleep 60\n'
    )
    monkeypatch.setenv(_ffmpeg.FFMPEG_ENV, str(_wrapper(tmp_path, body)))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BadInputError, match="source.wav.*no valid data"):
        media.export_audio(long_wav, out / "x.m4a", n_jobs=2)
    assert list(out.iterdir()) == []
    _assert_gone(pid_file)


def test_hung_encoders_are_killed_at_the_time_limit(tmp_path: Path, long_wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = child_pids()
    pid_file = tmp_path / "first.pid"
    body = f'case " $* " in *" -ss "*) exec sleep 60;; esac\necho $$ > "{pid_file}"\nexec sleep 60\n'
    monkeypatch.setenv(_ffmpeg.FFMPEG_ENV, str(_wrapper(tmp_path, body)))
    out = tmp_path / "out"
    out.mkdir()
    with _ffmpeg.time_limit(1.0), pytest.raises(BadInputError, match="source.wav.*did not finish within 1 s"):
        media.export_audio(long_wav, out / "x.m4a", n_jobs=2)
    assert list(out.iterdir()) == []
    _assert_gone(pid_file)
    assert child_pids() <= before


def test_interrupt_kills_every_encoder(tmp_path: Path, long_wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = child_pids()
    pid_file = tmp_path / "first.pid"
    body = (  # the middle segment waits; the last (no -t) interrupts this process
        f'case " $* " in *" -ss "*" -t "*) exec sleep 60;; *" -ss "*) {_wait_for(pid_file)} kill -INT $PPID; exec sleep 60;; esac\n'
        f'echo $$ > "{pid_file}"\nexec sleep 60\n'
    )
    monkeypatch.setenv(_ffmpeg.FFMPEG_ENV, str(_wrapper(tmp_path, body)))
    out = tmp_path / "out"
    out.mkdir()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            media.remux(long_wav, long_wav, out / "x.m4a", audio_codec="aac", n_jobs=3)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert list(out.iterdir()) == []
    _assert_gone(pid_file)
    assert child_pids() <= before
