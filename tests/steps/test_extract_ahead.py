"""The extraction begun ahead (``destatic run`` starts it before Prefect loads): taken over by the step, never repeated, never half left."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from destatic import media
from destatic.errors import BadInputError
from destatic.steps import extract


@pytest.fixture
def decodes(monkeypatch):
    """The sources ffmpeg decoded: media.extract_audio, counted (it still runs)."""
    calls: list[Path] = []
    real = media.extract_audio

    def counted(source, target, **kwargs):
        calls.append(Path(source))
        return real(source, target, **kwargs)

    monkeypatch.setattr(media, "extract_audio", counted)
    return calls


def test_a_decoding_begun_ahead_is_taken_over_not_repeated(short_video: Path, tmp_path: Path, decodes) -> None:
    video = short_video.absolute()
    work = tmp_path / "work"
    extract.start_ahead(video, work)
    extract.start_ahead(video, work)  # one decoding per target
    target = extract.target_in(work, video)
    record = extract.run(video, target)
    assert record.path == target and record.frames == sf.info(target).frames > 0
    assert decodes == [video]
    extract.run(video, target)  # nothing begun ahead any more: decoded again
    assert decodes == [video, video]
    extract.start_ahead(video, work)  # the WAV is there: nothing to begin
    assert len(decodes) == 2


def test_a_failed_decoding_ahead_is_the_steps_own_error_and_leaves_nothing(tmp_path: Path, decodes) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x17" * 4000)
    work = tmp_path / "work"
    extract.start_ahead(broken, work)
    with pytest.raises(BadInputError, match="broken.mp4"):
        extract.run(broken, extract.target_in(work, broken))
    assert decodes == [broken, broken], "the step decodes again itself after a failure ahead"
    assert not [path for path in work.rglob("*") if path.is_file()], "a partial or failed WAV was left"
