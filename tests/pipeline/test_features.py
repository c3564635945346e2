"""What users of denoisers reach for: a saved profile reused, the residue, loudness, a report to listen to."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from destatic.cli import app

runner = CliRunner()


def _flat(output: str) -> str:
    return " ".join(output.replace("│", " ").split())


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.usefixtures("prefect_harness")
def test_a_saved_profile_cleans_other_files(in_tmp: Path, media_dir: Path) -> None:
    """Profile once from a noise-only stretch, reduce many: Audacity's habit."""
    first, second = in_tmp / "sp01.wav", in_tmp / "sp11.wav"
    shutil.copyfile(media_dir / "pairs/noizeus/sp01_car_sn5.wav", first)
    shutil.copyfile(media_dir / "pairs/noizeus/sp11_car_sn5.wav", second)
    saved = runner.invoke(app, ["profile", str(first), "--noise-start", "0", "--noise-end", "0.2", "--save", "car.npz"])
    assert saved.exit_code == 0, saved.output
    work = in_tmp / "work"
    reused = runner.invoke(app, ["run", str(second), "--profile-file", "car.npz", "-o", "reused.wav", "--work", str(work)])
    assert reused.exit_code == 0, reused.output
    (report,) = work.glob("*/report.md")
    assert "saved: the profile" in report.read_text() and "car.npz" in report.read_text()
    auto = runner.invoke(app, ["run", str(second), "-o", "auto.wav", "--work", str(work)])
    assert auto.exit_code == 0, auto.output
    cleaned, rate = sf.read(in_tmp / "reused.wav", dtype="float32")
    noisy = sf.read(second, dtype="float32")[0]
    assert rate == 8000 and cleaned.shape == noisy.shape and np.sum(cleaned**2) < np.sum(noisy**2)
    assert not np.array_equal(cleaned, sf.read(in_tmp / "auto.wav", dtype="float32")[0])


def test_a_saved_profile_of_another_rate_is_refused_at_start(in_tmp: Path, media_dir: Path) -> None:
    narrow, wide = in_tmp / "narrow.wav", in_tmp / "wide.wav"
    shutil.copyfile(media_dir / "pairs/noizeus/sp01_car_sn5.wav", narrow)
    shutil.copyfile(media_dir / "pairs/voicebank/noisy/p232_001.wav", wide)
    assert runner.invoke(app, ["profile", str(narrow), "--save", "narrow.npz"]).exit_code == 0
    result = runner.invoke(app, ["run", str(wide), "--profile-file", "narrow.npz"])
    assert result.exit_code == 2, result.output
    assert "was measured at 8000 Hz, the audio is 16000 Hz" in _flat(result.output)
    not_a_profile = in_tmp / "notes.npz"
    not_a_profile.write_bytes(b"not a profile")
    result = runner.invoke(app, ["run", str(wide), "--profile-file", str(not_a_profile)])
    assert result.exit_code == 2 and "is not a destatic noise profile" in _flat(result.output)
    result = runner.invoke(app, ["run", str(wide), "--profile-file", "narrow.npz", "--profile", "head"])
    assert result.exit_code == 2 and "choose one of" in _flat(result.output)


@pytest.mark.usefixtures("prefect_harness")
def test_the_watcher_quarantines_a_file_the_saved_profile_does_not_fit(in_tmp: Path, media_dir: Path) -> None:
    inbox = in_tmp / "inbox"
    inbox.mkdir()
    shutil.copyfile(media_dir / "pairs/noizeus/sp01_car_sn5.wav", inbox / "narrow.wav")
    shutil.copyfile(media_dir / "pairs/voicebank/noisy/p232_001.wav", inbox / "wide.wav")
    assert runner.invoke(app, ["profile", str(inbox / "narrow.wav"), "--save", "narrow.npz"]).exit_code == 0
    result = runner.invoke(app, ["watch", str(inbox), "--stable", "0", "--once", "--profile-file", "narrow.npz"])
    assert result.exit_code == 1, result.output
    assert (in_tmp / "outbox" / "narrow.wav").is_file() and (in_tmp / "done" / "narrow.wav").is_file()
    note = (in_tmp / "quarantine" / "wide.wav.error.txt").read_text()
    assert "was measured at 8000 Hz, the audio is 16000 Hz" in note


@pytest.mark.usefixtures("prefect_harness")
def test_the_residue_is_what_was_removed_sample_aligned_in_the_outputs_format(in_tmp: Path, media_dir: Path) -> None:
    video = in_tmp / "talk.mp4"
    shutil.copyfile(media_dir / "video/chaplin.mp4", video)
    result = runner.invoke(app, ["run", str(video), "--residue", "removed.mp4", "--work", str(in_tmp / "work")])
    assert result.exit_code == 0, result.output
    from destatic import media

    original, cleaned, removed = (media.read_audio(path)[0] for path in (video, in_tmp / "talk-clean.mp4", in_tmp / "removed.mp4"))
    assert media.probe(in_tmp / "removed.mp4").streams[0].kind == "video"
    assert cleaned.shape == removed.shape
    # the encoded residue is lossy: the residue WAV the step wrote is exact, the encoded one lines up with it
    (residue_wav,) = (in_tmp / "work").glob("*/residue-*.wav")
    (extract_wav,) = (in_tmp / "work").glob("*/extract-*.wav")
    (inverse_wav,) = (in_tmp / "work").glob("*/inverse-*.wav")
    exact = sf.read(residue_wav, dtype="float32")[0]
    np.testing.assert_array_equal(exact, sf.read(extract_wav, dtype="float32")[0] - sf.read(inverse_wav, dtype="float32")[0])
    assert np.sum(exact**2) > 0
    lag = np.argmax(np.correlate(removed[:20000, 0], exact[:20000, 0], mode="full")) - 19999
    assert lag == 0, "the encoded residue lines up with the input"

    flac = runner.invoke(app, ["run", str(video), "--format", "flac", "-o", "talk.flac", "--residue", "removed.flac", "--work", str(in_tmp / "work")])
    assert flac.exit_code == 0, flac.output
    np.testing.assert_allclose(sf.read(in_tmp / "removed.flac", dtype="float32")[0], exact, atol=2**-22)
    as_audio = runner.invoke(app, ["run", str(video), "-o", "video.mp4", "--residue", "removed.wav", "--work", str(in_tmp / "work")])
    assert as_audio.exit_code == 0, as_audio.output  # a video's residue as audio alone, to listen to (issue 32)
    assert media.probe(in_tmp / "video.mp4").streams[0].kind == "video"
    np.testing.assert_allclose(sf.read(in_tmp / "removed.wav", dtype="float32")[0], exact, atol=2**-15)
    bad = runner.invoke(app, ["run", str(video), "--residue", "removed.mkv"])
    assert bad.exit_code == 2 and "remuxing keeps the container" in _flat(bad.output)


def test_the_loudness_gain_reaches_the_target_under_the_peak_ceiling() -> None:
    from destatic.media import Loudness
    from destatic.steps.loudness import gain_for

    assert gain_for(Loudness(-30.0, -20.0), target_lufs=-16, ceiling_dbtp=-1) == (14.0, False)
    assert gain_for(Loudness(-30.0, -6.0), target_lufs=-16, ceiling_dbtp=-1) == (5.0, True)
    assert gain_for(Loudness(None, None), target_lufs=-16, ceiling_dbtp=-1) == (0.0, False)


@pytest.mark.usefixtures("prefect_harness")
def test_loudness_is_reached_measured_and_reported(in_tmp: Path, media_dir: Path) -> None:
    from destatic import media

    speech = in_tmp / "speech.flac"
    shutil.copyfile(media_dir / "speech/198-209-0000.decoded.flac", speech)
    result = runner.invoke(app, ["run", str(speech), "--loudness", "-28", "-o", "loud.wav", "--work", str(in_tmp / "work")])
    assert result.exit_code == 0, result.output
    measured = media.measure_loudness(in_tmp / "loud.wav")
    assert measured.integrated_lufs == pytest.approx(-28, abs=0.15) and measured.true_peak_dbtp <= -1.0
    (report,) = (in_tmp / "work").glob("*/report.md")
    assert "## Loudness" in report.read_text() and "| output | -28.0 LUFS |" in report.read_text()
    limited = runner.invoke(app, ["run", str(speech), "--loudness", "-8", "-o", "limited.wav", "--work", str(in_tmp / "work")])
    assert limited.exit_code == 0, limited.output
    measured = media.measure_loudness(in_tmp / "limited.wav")
    assert measured.integrated_lufs < -8.5 and measured.true_peak_dbtp == pytest.approx(-1.0, abs=0.15)
    assert "the true-peak ceiling of -1 dBTP set it" in report.read_text()
    plain = runner.invoke(app, ["run", str(speech), "-o", "plain.wav", "--work", str(in_tmp / "work")])
    assert plain.exit_code == 0
    loud, quiet = sf.read(in_tmp / "loud.wav", dtype="float32")[0], sf.read(in_tmp / "plain.wav", dtype="float32")[0]
    assert loud.shape == quiet.shape
    gain = np.dot(loud, quiet) / np.dot(quiet, quiet)
    np.testing.assert_allclose(loud, gain * quiet, atol=1e-6)  # one gain: the sound itself unchanged, still aligned
