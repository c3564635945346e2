"""The listening report (report.html): the excerpt it plays, bad input, and the page in a real headless browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from destatic import steps
from destatic.settings import NoiseSettings, SuppressionSettings, load_settings
from destatic.steps import listening, report, report_page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does it as root)")

_CATCH = '<script>window.__errors=[];window.addEventListener("error",function(e){__errors.push(e.message||("failed: "+(e.target&&e.target.tagName)))},true);</script>'
_PROBE = """<script>
var probed=false;
function probe(){
  if(probed)return;probed=true;
  var media=[].map.call(document.querySelectorAll("audio,video"),function(x){return {tag:x.tagName,duration:x.duration,error:x.error&&x.error.code}});
  var images=[].map.call(document.images,function(x){return {width:x.naturalWidth,height:x.naturalHeight}});
  var out=document.createElement("pre");out.id="probe";out.textContent=JSON.stringify({media:media,images:images,errors:__errors});document.body.appendChild(out);
}
window.addEventListener("load",function(){Promise.all([].map.call(document.querySelectorAll("audio,video"),function(x){
  return x.readyState>=1||x.error?0:new Promise(function(done){x.addEventListener("loadedmetadata",done);x.addEventListener("error",done);});})).then(probe);
  setTimeout(probe,5000);});
</script>"""


def _clean(source: Path, work: Path) -> tuple[steps.ExtractedAudio, steps.ProfiledNoise, steps.AudioFile]:
    """The pipeline's steps on `source` without Prefect, with the quick classic method."""
    audio = steps.extract.run(source, work / "extract.wav")
    noise = steps.profile.run(audio, work / "profile.npz", NoiseSettings().request("logmmse"), method="logmmse")
    gains = steps.subtract.run(audio, noise, work / "gains.npy", "logmmse", SuppressionSettings(method="logmmse").options())
    return audio, noise, steps.inverse.run(audio, gains, noise, work / "cleaned.wav")


def _report(source: Path, work: Path) -> tuple[steps.Plots, Path]:
    """Clean `source` and write its report; return the report step's record and report.html."""
    audio, noise, cleaned = _clean(source, work)
    plots = report.run(audio, noise, cleaned, work / "plots-0123456789abcdef0123.json", source=source)
    report_page.write_report(
        source=source, output=source.with_name("out" + source.suffix), work_dir=work, audio=audio, noise=noise, cleaned=cleaned,
        plots=plots, settings=load_settings(suppression={"method": "logmmse"}), step_seconds={"extract": 0.5, "subtract": 1.25},
        artifact_key="destatic-test", flow_run_id=None,
    )
    return plots, work / report_page.REPORT_HTML


def _in_chromium(page: Path, tmp_path: Path) -> tuple[dict[str, Any], list[str]]:
    """Open a copy of `page` with a probe script in headless chromium: what the probe saw, and the console's lines."""
    probed = tmp_path / "probed.html"
    text = page.read_text(encoding="utf-8")
    probed.write_text(text.replace("<head>", "<head>" + _CATCH, 1).replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    done = subprocess.run(
        [CHROMIUM, "--headless=new", "--disable-gpu", "--no-sandbox", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.DOTALL)
    assert found, f"the probe did not run: {done.stderr[-2000:]}"
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")), console


def _noisy(path: Path, seconds: float, rate: int, rng: np.random.Generator, *, burst: tuple[float, float] | None = None) -> Path:
    t = np.arange(round(seconds * rate)) / rate
    audio = 0.02 * rng.standard_normal(t.size)
    if burst is not None:
        inside = (t >= burst[0]) & (t < burst[1])
        audio[inside] += 0.3 * np.sin(2 * np.pi * 300 * t[inside]) * (1 + np.sin(2 * np.pi * 3 * t[inside]))
    sf.write(path, audio.astype(np.float32), rate, subtype="FLOAT")
    return path


def test_the_excerpt_is_the_stretch_with_the_most_sound_above_the_noise(tmp_path: Path, rng: np.random.Generator) -> None:
    rate = 8000
    before = _noisy(tmp_path / "before.wav", 60.0, rate, rng, burst=(38.0, 46.0))
    audio, _ = sf.read(before, dtype="float32")
    t = np.arange(audio.size) / rate
    after = tmp_path / "after.wav"
    sf.write(after, np.where((t >= 38.0) & (t < 46.0), audio, 0.1 * audio), rate, subtype="FLOAT")
    start, end = report.choose_excerpt(before, after)
    assert end - start == pytest.approx(report.EXCERPT_S)
    assert start <= 38.0 and end >= 46.0


def test_a_short_or_silent_file_is_its_own_excerpt(tmp_path: Path, rng: np.random.Generator) -> None:
    short = _noisy(tmp_path / "short.wav", 4.0, 8000, rng)
    assert report.choose_excerpt(short, short) == (0.0, pytest.approx(4.0))
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000 * 40, np.float32), 8000, subtype="FLOAT")
    start, end = report.choose_excerpt(silent, silent)
    assert (start, end) == (0.0, pytest.approx(report.EXCERPT_S))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 8000, subtype="FLOAT")
    assert report.choose_excerpt(empty, empty) == (0.0, 0.0)
    listening.write_excerpt(empty, tmp_path / "empty.flac", start=0.0, end=0.0)
    assert sf.info(tmp_path / "empty.flac").frames == 1


def test_a_silent_file_gets_a_report(tmp_path: Path) -> None:
    """No speech, no noise: the report is written (no reduction to state), its players play silence."""
    source = tmp_path / "silent.wav"
    sf.write(source, np.zeros(16000 * 3, np.float32), 16000)
    work = tmp_path / "work"
    audio = steps.extract.run(source, work / "extract.wav")
    profile = steps.profile.run(audio, work / "profile.npz", NoiseSettings().request("logmmse"), method="logmmse")
    plots = report.run(audio, profile, audio, work / "plots-0123456789abcdef0123.json", source=source)
    assert plots.reduction_db is None and plots.before_clip is None and plots.clip_note is None
    report_page.write_report(
        source=source, output=source, work_dir=work, audio=audio, noise=profile, cleaned=audio, plots=plots,
        settings=load_settings(), step_seconds={}, artifact_key="k", flow_run_id=None,
    )
    page = (work / report_page.REPORT_HTML).read_text(encoding="utf-8")
    assert page.count("<audio") == 2 and "<video" not in page


def test_the_report_says_how_deep_the_hybrids_gains_went_with_an_automatic_profile() -> None:
    hybrid, logmmse = (load_settings(suppression={"method": method}) for method in ("hybrid", "logmmse"))
    used = report_page.settings_used(hybrid, profile_mode="auto")
    assert used["suppression.reduction_db"] == ("80.0 (at most 30.0 with the auto profile)", "default")
    assert report_page.settings_used(hybrid, profile_mode="segment")["suppression.reduction_db"] == (80.0, "default")
    shallow = load_settings(suppression={"method": "hybrid", "reduction_db": 18})
    assert report_page.settings_used(shallow, profile_mode="auto")["suppression.reduction_db"] == (18.0, "set")
    assert report_page.settings_used(logmmse, profile_mode="auto")["suppression.reduction_db"] == (30.0, "default")


def test_audio_input_gets_audio_players_only(media_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "speech.flac"
    shutil.copyfile(media_dir / "speech" / "3436-172162-0000.decoded.flac", source)
    plots, page = _report(source, tmp_path / "work")
    start, end = plots.excerpt
    assert end - start == pytest.approx(report.EXCERPT_S) and 0 <= start and end <= 16.75, "15 s of a 16.7 s sentence"
    assert sf.info(plots.after_excerpt).duration == pytest.approx(report.EXCERPT_S, abs=0.01)
    text = page.read_text(encoding="utf-8")
    assert text.count("<audio") == 2 and "<video" not in text and "data:audio/flac;base64," in text
    markdown = (tmp_path / "work" / "report.md").read_text(encoding="utf-8")
    assert f"({page.absolute().as_uri()})" in markdown and "Spectrograms, before and after" in markdown


@needs_chromium
def test_the_report_of_a_video_plays_in_a_browser(media_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real clip under a name full of markup: the page is escaped, self-contained, and every player and picture loads."""
    source = tmp_path / 'talk <b>&"x".mpg'
    shutil.copyfile(media_dir / "video" / "bbaf2n.mpg", source)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    plots, page = _report(source, tmp_path / "work")
    assert list(cwd.iterdir()) == [], "moviepy wrote into the current folder"
    assert plots.clip_note is None and plots.before_clip is not None and plots.after_clip is not None
    assert plots.excerpt == (0.0, pytest.approx(3.0, abs=0.1)), "a short file is its own excerpt"

    text = page.read_text(encoding="utf-8")
    assert "<b>" not in text and "talk &lt;b&gt;&amp;&quot;x&quot;.mpg" in text
    assert "<script" not in text and not re.search(r'(src|href)="(?!data:)', text), "only data: URIs"
    assert text.count("<audio") == 2 and text.count("<video") == 2
    assert page.stat().st_size < 3 * 1024**2

    seen, console = _in_chromium(page, tmp_path)
    assert console == [] and seen["errors"] == []
    assert [m["tag"] for m in seen["media"]] == ["AUDIO", "AUDIO", "VIDEO", "VIDEO"]
    for player in seen["media"]:
        assert player["error"] is None and isinstance(player["duration"], (int, float)) and 0 < player["duration"] < 10, player
    assert len(seen["images"]) == 2 and all(image["width"] > 0 for image in seen["images"])
