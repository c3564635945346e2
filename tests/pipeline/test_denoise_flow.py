"""The denoise-file flow under a real Prefect server: caching, retries, quarantine, artifacts."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.usefixtures("prefect_harness")

STEPS = ("extract_audio", "profile_noise", "subtract_noise", "inverse_stft", "export_audio", "plot_report")


def _run(task_runs, source: Path, settings, **kwargs):
    from destatic.flows import denoise_file

    state = denoise_file(source, settings, return_state=True, **kwargs)
    runs = task_runs(state.state_details.flow_run_id, expected=len(STEPS) + 1)
    return state, runs


def _cached(runs: dict, name: str) -> bool:
    (run,) = runs[name]
    return run.state.name == "Cached"


def test_rerun_hits_the_cache_and_partial_change_reruns_only_what_follows(task_runs, speech_wav: Path, make_settings, tmp_path: Path) -> None:
    output = tmp_path / "out" / "speech.flac"
    first_state, first = _run(task_runs, speech_wav, make_settings(), output=output)
    assert first_state.is_completed(), first_state.message
    assert not any(_cached(first, step) for step in STEPS)
    cleaned_first, rate = sf.read(output, dtype="float32")
    noisy, noisy_rate = sf.read(speech_wav, dtype="float32")
    assert rate == noisy_rate and cleaned_first.shape == noisy.shape
    assert np.sum(cleaned_first**2) < np.sum(noisy**2)

    output.unlink()
    state, again = _run(task_runs, speech_wav, make_settings(), output=output)
    assert state.is_completed()
    assert all(_cached(again, step) for step in STEPS)
    assert np.array_equal(sf.read(output, dtype="float32")[0], cleaned_first)

    state, changed = _run(task_runs, speech_wav, make_settings(suppression={"reduction_db": 6}), output=output)
    assert state.is_completed()
    assert _cached(changed, "extract_audio") and _cached(changed, "profile_noise")
    assert not any(_cached(changed, step) for step in ("subtract_noise", "inverse_stft", "export_audio"))
    cleaned_6db = sf.read(output, dtype="float32")[0]
    assert np.sum(cleaned_6db**2) > np.sum(cleaned_first**2)


def test_deleted_artifact_is_recomputed_not_returned_stale(task_runs, speech_wav: Path, make_settings, tmp_path: Path) -> None:
    settings = make_settings()
    output = tmp_path / "speech.wav"
    state, _ = _run(task_runs, speech_wav, settings, output=output)
    assert state.is_completed()
    (profile_npz,) = settings.paths.work.glob("*/profile-*.npz")
    (extracted,) = settings.paths.work.glob("*/extract-*.wav")
    profile_npz.unlink()
    extracted.unlink()
    state, runs = _run(task_runs, speech_wav, settings, output=output)
    assert state.is_completed()
    assert not _cached(runs, "extract_audio") and not _cached(runs, "profile_noise")
    assert profile_npz.is_file() and extracted.is_file()


def test_changed_input_bytes_miss_the_cache(task_runs, speech_wav: Path, make_settings, tmp_path: Path) -> None:
    settings = make_settings()
    _run(task_runs, speech_wav, settings, output=tmp_path / "a.wav")
    audio, rate = sf.read(speech_wav, dtype="float32")
    sf.write(speech_wav, audio * 0.5, rate, subtype="FLOAT")
    state, runs = _run(task_runs, speech_wav, settings, output=tmp_path / "b.wav")
    assert state.is_completed()
    assert not any(_cached(runs, step) for step in STEPS)


def _flaky_ffmpeg(folder: Path, *, kills: int) -> Path:
    """An ffmpeg that gets killed (SIGKILL) on its first `kills` calls, then runs the real one."""
    import imageio_ffmpeg

    script = folder / "ffmpeg"
    marker = folder / "kills"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            if [ "$(cat '{marker}' 2>/dev/null | wc -c)" -lt {kills} ]; then
                printf x >> '{marker}'
                kill -9 $$
            fi
            exec '{imageio_ffmpeg.get_ffmpeg_exe()}' "$@"
            """
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_transient_failure_is_retried(task_runs, denoise_runs, speech_wav: Path, tmp_path: Path) -> None:
    # A separate process, so that its ffmpeg is the flaky one from the start.
    from prefect.settings import PREFECT_API_URL

    # The first kill meets the extraction destatic run begins before the flow
    # (the step then decodes again itself), the second the step's first try.
    script = _flaky_ffmpeg(tmp_path, kills=2)
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "DESTATIC_FFMPEG": str(script),
        "DESTATIC_RUNTIME__RETRIES": "2",
        "DESTATIC_RUNTIME__RETRY_DELAY_S": "0",
        "DESTATIC_PATHS__WORK": str(tmp_path / "work"),
    }
    command = [sys.executable, "-m", "destatic", "run", str(speech_wav), "-o", str(tmp_path / "out.wav")]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert (tmp_path / "kills").read_text() == "xx", "the flaky ffmpeg was not used"
    assert done.returncode == 0, done.stderr
    assert sf.info(str(tmp_path / "out.wav")).frames == sf.info(str(speech_wav)).frames
    (flow_run,) = denoise_runs(speech_wav)
    runs = task_runs(flow_run.id, expected=len(STEPS) + 1)
    (extract,) = runs["extract_audio"]
    assert extract.run_count == 2


def test_bad_input_is_not_retried_and_a_claimed_one_is_quarantined(make_settings, task_runs, rng: np.random.Generator) -> None:
    from destatic.flows import denoise_file
    from destatic.inbox import claim

    settings = make_settings(runtime={"retries": 3})
    bad = settings.paths.inbox / "sub" / "noise.mp4"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(rng.bytes(4096))
    taken = claim(settings.paths.inbox, Path("sub/noise.mp4"))
    state = denoise_file(taken.folder, settings, return_state=True)
    assert state.is_failed()
    runs = task_runs(state.state_details.flow_run_id, expected=1)
    (extract,) = runs["extract_audio"]
    assert extract.run_count == 1
    assert not bad.exists()
    moved = settings.paths.quarantine / "sub" / "noise.mp4"
    assert moved.is_file()
    note = (settings.paths.quarantine / "sub" / "noise.mp4.error.txt").read_text()
    assert "step: extract" in note and "time: " in note
    reason = next(line for line in note.splitlines() if line.startswith("reason: ")).removeprefix("reason: ")
    assert reason and reason in state.message


def test_bad_input_from_run_stays_where_it_is(make_settings, tmp_path: Path) -> None:
    import logging

    from destatic.errors import BadInputError
    from destatic.flows import denoise_file

    settings = make_settings()
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    records: list[logging.LogRecord] = []
    collect = logging.Handler(logging.ERROR)
    collect.emit = records.append
    flow_runs = logging.getLogger("prefect.flow_runs")
    flow_runs.addHandler(collect)
    try:
        with pytest.raises(BadInputError):
            denoise_file(empty, settings)
    finally:
        flow_runs.removeHandler(collect)
    assert empty.exists()
    assert not settings.paths.quarantine.exists()
    failure = [r for r in records if "empty.wav" in r.getMessage()]
    assert failure and all(r.exc_info is None for r in failure), "a bad input is logged as its reason, no traceback"


def test_video_is_remuxed_and_reported(short_video: Path, make_settings, tmp_path: Path) -> None:
    from prefect.artifacts import Artifact

    from destatic import media
    from destatic.flows import denoise_file
    from destatic.workspace import report_key, work_dir_for
    from destatic.steps.report_page import LAST_RUN

    settings = make_settings()
    output = denoise_file(short_video, settings)
    assert output == short_video.with_name("talk-clean.mpg")
    before, after = media.probe(short_video), media.probe(output)
    assert [s.kind for s in after.streams] == [s.kind for s in before.streams]

    work = work_dir_for(short_video, settings)
    for name in ("report.md", "report.html", LAST_RUN):
        assert (work / name).is_file(), name
    record = json.loads((work / LAST_RUN).read_text())
    assert record["report_html"] == str(work / "report.html")
    assert len(list(work.glob("plots-*-before.mp4"))) == 1, "a video's report has preview clips"
    for plot in (record["profile_plot"], record["spectrogram_plot"]):
        assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    artifact = Artifact.get(report_key(short_video))
    assert artifact is not None and artifact.type == "markdown"
    text = artifact.data
    assert "data:image/png;base64," in text
    for heading in ("## Input streams", "## Noise profile", "## Steps", "## Settings"):
        assert heading in text
    assert "estimated noise reduction" in text and "suppression.reduction_db" in text
    assert (work / "report.html").as_uri() in text, "the artifact links the listening report"

    audio_only = denoise_file(short_video, settings.model_copy(update={"output": settings.output.model_copy(update={"mode": "audio"})}))
    assert audio_only.suffix == ".flac"
    assert len(list(work.glob("plots-*-before.mp4"))) == 1, "an audio-only output's report has no preview clips of its own"
    assert "<video" not in (work / "report.html").read_text(encoding="utf-8")


def test_long_file_gets_a_progress_artifact(make_settings, tmp_path: Path, rng: np.random.Generator) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from destatic.flows import LONG_FILE_S, denoise_file

    rate = 8000
    long_wav = tmp_path / "long.wav"
    seconds = LONG_FILE_S + 1
    t = np.arange(int(seconds * rate)) / rate
    sf.write(long_wav, (0.2 * np.sin(2 * np.pi * 440 * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32), rate)
    state = denoise_file(long_wav, make_settings(), output=tmp_path / "long-clean.wav", return_state=True)
    assert state.is_completed()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    progress = [a for a in artifacts if a.type == "progress"]
    assert len(progress) == 1 and progress[0].data == 100.0


def test_step_keys_follow_content_and_settings(speech_wav: Path, tmp_path: Path) -> None:
    from destatic.settings import SuppressionSettings
    from destatic.cache import step_key

    inputs = {"audio_wav": speech_wav, "work_dir": tmp_path, "suppression": SuppressionSettings()}
    base = step_key("subtract", inputs)
    assert step_key("subtract", inputs) == base
    assert step_key("subtract", {**inputs, "suppression": SuppressionSettings(reduction_db=6)}) != base
    assert step_key("inverse", inputs) != base
    by_content = step_key("extract", {"source": speech_wav, "work_dir": tmp_path}, content=("source",))
    os.utime(speech_wav, (1, 1))
    assert step_key("extract", {"source": speech_wav, "work_dir": tmp_path}, content=("source",)) == by_content
    speech_wav.write_bytes(speech_wav.read_bytes() + b"\0")
    assert step_key("extract", {"source": speech_wav, "work_dir": tmp_path}, content=("source",)) != by_content


@pytest.mark.parametrize("mode", ["segment", "file", "head"])
def test_noise_profile_modes_reach_the_profile(mode: str, speech_wav: Path, make_settings, tmp_path: Path, rng: np.random.Generator) -> None:
    from destatic.dsp import NoiseProfile
    from destatic.flows import denoise_file

    noise: dict = {"mode": mode}
    if mode == "segment":
        noise.update(start_s=0.0, end_s=0.25)
    if mode == "file":
        rate = sf.info(str(speech_wav)).samplerate
        noise["file"] = tmp_path / "room.wav"
        sf.write(noise["file"], (0.01 * rng.standard_normal(rate)).astype(np.float32), rate)
    settings = make_settings(noise=noise)
    denoise_file(speech_wav, settings, output=tmp_path / "out.wav")
    (profile_npz,) = settings.paths.work.glob("*/profile-*.npz")
    assert NoiseProfile.load(profile_npz).mode == mode
    (report_md,) = settings.paths.work.glob("*/report.md")
    assert f"## Noise profile\n\n{mode}: " in report_md.read_text()


def test_progress_reaches_this_process_listener_in_order(speech_wav: Path, make_settings, tmp_path: Path) -> None:
    """The CLI's progress bars: every step reports to the listener set around the run, ending at 100 %."""
    from destatic import tasks
    from destatic.flows import denoise_file
    from destatic.workspace import work_dir_for

    settings = make_settings()
    heard: list[tuple[Path, float]] = []
    token = tasks.progress_listener.set(lambda work_dir, percent: heard.append((work_dir, percent)))
    try:
        denoise_file(speech_wav, settings, output=tmp_path / "out.flac")
    finally:
        tasks.progress_listener.reset(token)
    percents = [percent for _, percent in heard]
    assert {work_dir.absolute() for work_dir, _ in heard} == {work_dir_for(speech_wav, settings).absolute()}
    assert percents[0] == 10.0 and percents[-1] == 100.0
    assert percents == sorted(percents)
    assert {60.0, 90.0} <= set(percents)


def test_a_run_probes_its_source_once_and_loads_no_profile_file(short_video: Path, make_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The steps hand each other records: the remux and the report reuse the extract step's probe, and the profile travels loaded."""
    from destatic.dsp import NoiseProfile
    from destatic.flows import denoise_file
    from destatic.media import _ffmpeg

    probes: list[list[str]] = []
    real_run, real_load = _ffmpeg.run, NoiseProfile.load.__func__
    loads: list[object] = []

    source_url = _ffmpeg.file_url(short_video)

    def counting_run(args, **kwargs):
        if args[-1] == source_url:
            probes.append(list(args))  # ffmpeg -i SOURCE and no output: a probe
        return real_run(args, **kwargs)

    def counting_load(cls, file):
        loads.append(file)
        return real_load(cls, file)

    monkeypatch.setattr(_ffmpeg, "run", counting_run)
    monkeypatch.setattr(NoiseProfile, "load", classmethod(counting_load))
    # In the flow's process, so that every probe and load is counted here.
    denoise_file(short_video, make_settings(runtime={"isolate_steps": False}), output=tmp_path / "out.mpg")
    assert len(probes) == 1
    assert loads == []


def test_steps_in_child_processes_give_the_same_bytes_and_leave_no_prefect_there(
    short_video: Path, make_settings, tmp_path: Path
) -> None:
    """isolate_steps (the default) moves the heavy steps out of the flow's process, and changes no output."""
    import hashlib

    from destatic.flows import denoise_file
    from destatic.steps import isolated

    isolated.close_children()
    outputs = {}
    for isolate in (True, False):
        settings = make_settings(runtime={"isolate_steps": isolate}, paths={"work": tmp_path / f"work-{isolate}"})
        outputs[isolate] = denoise_file(short_video, settings, output=tmp_path / f"out-{isolate}.mpg")
        if isolate:
            kinds = {kind for kind, idle in isolated._idle.items() if idle}
            assert kinds == {"steps", "report"}, "the steps and the report ran in their own children"
    digests = {isolate: hashlib.sha256(path.read_bytes()).hexdigest() for isolate, path in outputs.items()}
    assert digests[True] == digests[False]


def test_the_flow_run_is_tagged_and_its_step_runs_are_not(task_runs, speech_wav: Path, make_settings, tmp_path: Path) -> None:
    """A tagged task run asks the server for tag concurrency slots as it starts; SQLite refused some while
    other runs wrote ("database is locked"), and each refusal held the step back by the client's 2 s retry."""
    from prefect import get_client, tags

    from destatic.flows import run_tags
    from destatic.flows.graph import NEEDS_LISTENING

    settings = make_settings(suppression={"method": "logmmse"})
    with tags(*run_tags(settings)):
        state, runs = _run(task_runs, speech_wav, settings, output=tmp_path / "out.flac")
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
    assert set(flow_run.tags) - {NEEDS_LISTENING} == {"destatic", "logmmse"}, "the run's tags, besides the quality flag"
    assert {name: run.tags for name, [run, *_] in runs.items()} == {name: [] for name in runs}


def test_the_extraction_begun_ahead_is_the_one_the_flow_takes(short_video: Path, make_settings, tmp_path: Path) -> None:
    """``destatic run`` decodes before the flow starts: to the WAV the extract step would write (else there would be two)."""
    from destatic.flows import denoise_file
    from destatic.steps import extract
    from destatic.workspace import work_dir_for

    settings = make_settings()
    source = short_video.absolute()
    work_dir = work_dir_for(source, settings)
    extract.start_ahead(source, work_dir)
    state = denoise_file(source, settings, output=tmp_path / "out" / "talk.mpg", return_state=True)
    assert state.is_completed(), state.message
    assert sorted(work_dir.glob("extract-*.wav")) == [extract.target_in(work_dir, source)]


def test_the_profile_begun_ahead_is_the_one_the_flow_takes(short_video: Path, make_settings, tmp_path: Path) -> None:
    """``destatic run`` measures the profile while Prefect loads: the flow's profile step takes that file, not a second one."""
    import time

    from destatic.flows import denoise_file
    from destatic.steps import ahead, warming
    from destatic.workspace import work_dir_for

    settings = make_settings()
    source = short_video.absolute()
    work_dir = work_dir_for(source, settings)
    warming.start_ahead(settings, source, work_dir)
    assert ahead.pending("profile", work_dir)
    deadline = time.monotonic() + 120
    while not list(work_dir.glob("profile-*.npz")) and time.monotonic() < deadline:
        time.sleep(0.05)
    [made] = work_dir.glob("profile-*.npz")
    made_inode = made.stat().st_ino
    state = denoise_file(source, settings, output=tmp_path / "out" / "talk.mpg", return_state=True)
    assert state.is_completed(), state.message
    assert list(work_dir.glob("profile-*.npz")) == [made] and made.stat().st_ino == made_inode, "the flow measured the profile again"
    assert not ahead.pending("profile", work_dir)
