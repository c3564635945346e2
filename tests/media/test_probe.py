"""Parsing ffmpeg's input report: real quirks and synthetic edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from destatic import media
from destatic.media.probe import parse_report
from media_checks import MEDIA_DIR


def test_metadata_that_is_not_utf8() -> None:
    path = MEDIA_DIR / "video" / "creative_common.mp4"
    if not path.is_file():
        pytest.skip(f"shared media folder {MEDIA_DIR} is absent")
    info = media.probe(path)
    assert info.streams[0].tags["handler_name"] == "Gestor de contenido de v\u00eddeo Apple"
    assert info.streams[1].tags["handler_name"] == "Gestor de contenido de sonido Apple"
    assert info.tags["creation_time"] == "2007-05-12T07:07:56.000000Z"


REPORT = """\
Input #0, mpegts, from 'file:/x/it's here, from 'odd'.ts':
  Metadata:
    title           : first line
                    : second line
  Duration: 01:02:03.45, start: 1.400000, bitrate: 2500 kb/s
  Chapters:
    Chapter #0:0: start 0.000000, end 10.000000
      Metadata:
        title           : Intro
  Program 1
    Metadata:
      service_name    : Service01
  Stream #0:0[0x100]: Video: h264 (High) ([27][0][0][0] / 0x001B), yuv420p(tv, bt709, progressive), 1920x1080 [SAR 1:1 DAR 16:9], 29.97 fps, 29.97 tbr, 90k tbn, start 1.400000
  Stream #0:1[0x101](deu): Audio: ac3 ([129][0][0][0] / 0x0081), 48000 Hz, 5.1(side), fltp, 448 kb/s, start 1.423000 (default) (visual impaired)
    Metadata:
      title           : Surround
  Stream #0:2[0x102](eng): Subtitle: subrip (srt)
  Stream #0:3: Attachment: ttf
    Metadata:
      filename        : font.ttf
  Program 2
  Stream #0:1[0x101](deu): Audio: ac3 ([129][0][0][0] / 0x0081), 48000 Hz, 5.1(side), fltp, 448 kb/s
    Metadata:
      title           : listed twice
  Stream #0:4: Audio: pcm_s24le, 96000 Hz, 3 channels, s32 (24 bit), 6912 kb/s
At least one output file must be specified
"""


def test_parse_report_edge_cases() -> None:
    info = parse_report(REPORT, Path("x.ts"))
    assert info.format_name == "mpegts"
    assert info.duration == pytest.approx(3723.45)
    assert (info.start_time, info.bitrate, info.chapters) == (1.4, 2_500_000, 1)
    assert info.tags == {"title": "first line\nsecond line"}
    assert [s.kind for s in info.streams] == ["video", "audio", "subtitle", "attachment", "audio"]
    video, surround, subtitle, font, pcm = info.streams
    assert (video.width, video.height, video.fps, video.start_time) == (1920, 1080, 29.97, 1.4)
    assert (surround.channel_layout, surround.channels, surround.bitrate) == ("5.1(side)", 6, 448_000)
    assert surround.dispositions == ("default", "visual impaired") and surround.default
    assert (surround.language, surround.start_time, surround.tags) == ("deu", 1.423, {"title": "Surround"})
    assert (subtitle.codec, subtitle.dispositions, subtitle.language) == ("subrip", (), "eng")
    assert font.tags == {"filename": "font.ttf"}
    assert (pcm.channels, pcm.sample_format, pcm.bits_per_sample, pcm.sample_rate) == (3, "s32", 24, 96000)
    assert info.default_audio_stream is surround and info.has_video


def test_parse_report_without_stream_list_is_bad_input() -> None:
    from destatic.errors import BadInputError

    with pytest.raises(BadInputError, match="x.bin: ffmpeg printed no stream list"):
        parse_report("Error opening input files: Invalid data\n", Path("x.bin"))
