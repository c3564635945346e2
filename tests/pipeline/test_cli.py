"""The destatic command through typer's CliRunner: exit codes, outputs, flags in step with Settings."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from destatic.cli import app

runner = CliRunner()


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("command", [[], ["run"], ["watch"], ["deploy"], ["profile"], ["artifacts"], ["cache"], ["cache", "prune"], ["server", "stop"]])
def test_help_everywhere(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output
    assert "<bool>" not in result.output  # Typer labels flags so, its own --help too


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["run", "missing.wav"], "does not exist"),
        (["run", "{speech}", "--noise-file", "{speech}", "--profile", "head"], "choose one of"),
        (["run", "{speech}", "--noise-start", "1"], "go together"),
        (["run", "{speech}", "--reduction-db", "-3"], "suppression.reduction_db=-3.0"),
        (["run", "{speech}", "--method", "magic"], "'magic' is not one of 'seed'"),
        (["run", "{speech}", "--format", "doc"], "'doc' is not one of 'wav'"),
        (["bogus"], "No such command"),
    ],
)
def test_bad_usage_exits_2(in_tmp: Path, speech_wav: Path, arguments: list[str], message: str) -> None:
    result = runner.invoke(app, [a.format(speech=speech_wav) for a in arguments])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output


@pytest.mark.usefixtures("prefect_harness")
def test_run_one_file_to_a_named_output(in_tmp: Path, speech_wav: Path) -> None:
    output = in_tmp / "clean" / "speech.flac"
    result = runner.invoke(app, ["run", str(speech_wav), "-o", str(output), "--work", str(in_tmp / "work")])
    assert result.exit_code == 0, result.output
    assert sf.info(str(output)).format == "FLAC"
    assert sf.info(str(output)).frames == sf.info(str(speech_wav)).frames

    shown = runner.invoke(app, ["artifacts", str(speech_wav), "--work", str(in_tmp / "work")])
    assert shown.exit_code == 0, shown.output
    assert "report.md" in shown.output and "report.html" in shown.output and "destatic-speech-" in shown.output


@pytest.mark.usefixtures("prefect_harness")
def test_run_many_files_one_bad_exits_1(in_tmp: Path, speech_wav: Path) -> None:
    bad = in_tmp / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEnot really")
    folder = in_tmp / "cleaned"
    folder.mkdir()
    result = runner.invoke(app, ["run", str(speech_wav), str(bad), "-o", str(folder)])
    assert result.exit_code == 1, result.output
    assert (folder / "speech-clean.wav").is_file()
    assert bad.exists(), "run must not move the user's files"
    assert "bad.wav" in result.output


def test_run_many_with_a_fifo_reports_it_and_goes_on(in_tmp: Path, speech_wav: Path) -> None:
    import os

    fifo = in_tmp / "fifo.wav"
    os.mkfifo(fifo)
    folder = in_tmp / "cleaned"
    folder.mkdir()
    result = runner.invoke(app, ["run", str(speech_wav), str(fifo), "-o", str(folder)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert (folder / "speech-clean.wav").is_file()
    assert "fifo.wav: is not a regular file" in " ".join(result.output.split())


def test_audio_the_dsp_refuses_fails_naming_the_file(in_tmp: Path) -> None:
    low = in_tmp / "low-rate.wav"
    sf.write(low, np.random.default_rng(3).normal(0, 0.1, 8000).astype(np.float32), 4000)
    result = runner.invoke(app, ["run", str(low)])
    assert result.exit_code == 1, result.output
    unwrapped = "".join(result.output.split())  # rich wraps long lines
    assert "low-rate.wav:itsaudiocannotbecleaned:sample_rate=4000" in unwrapped, result.output
    assert low.exists() and not (in_tmp / "low-rate-clean.wav").exists()


def test_artifacts_of_a_file_never_run(in_tmp: Path, speech_wav: Path) -> None:
    result = runner.invoke(app, ["artifacts", str(speech_wav), "--work", str(in_tmp / "work")])
    assert result.exit_code == 1
    assert "no run of" in result.output


def test_profile_saves_and_plots(in_tmp: Path, speech_wav: Path) -> None:
    from destatic.dsp import NoiseProfile

    result = runner.invoke(app, ["profile", str(speech_wav), "--save", "p.npz", "--plot", "p.png", "--profile", "head"])
    assert result.exit_code == 0, result.output
    profile = NoiseProfile.load(in_tmp / "p.npz")
    assert profile.mode == "head" and profile.sample_rate == sf.info(str(speech_wav)).samplerate
    assert np.all(profile.power > 0)
    assert (in_tmp / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.usefixtures("prefect_harness")
def test_watch_once(in_tmp: Path, speech_wav: Path) -> None:
    inbox = in_tmp / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "sub" / "s.wav").write_bytes(speech_wav.read_bytes())
    result = runner.invoke(app, ["watch", str(inbox), "--outbox", "out", "--stable", "0", "--once"])
    assert result.exit_code == 0, result.output
    assert (in_tmp / "out" / "sub" / "s.wav").is_file()
    assert (in_tmp / "done" / "sub" / "s.wav").is_file()


@pytest.mark.usefixtures("prefect_harness")
def test_commands_started_elsewhere_leave_the_current_folder_alone(tmp_path: Path, speech_wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run writes beside its input and into the user's cache; watch's done/ and quarantine/ go beside the inbox."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = runner.invoke(app, ["run", str(speech_wav)])
    assert result.exit_code == 0, result.output
    assert speech_wav.with_name("speech-clean.wav").is_file()
    inbox, outbox = tmp_path / "x" / "inbox", tmp_path / "x" / "outbox"
    inbox.mkdir(parents=True)
    (inbox / "s.wav").write_bytes(speech_wav.read_bytes())
    (inbox / "bad.wav").write_bytes(b"RIFF....WAVEnot really")
    result = runner.invoke(app, ["watch", str(inbox), "--outbox", str(outbox), "--stable", "0", "--once"])
    assert result.exit_code == 1, result.output
    assert (outbox / "s.wav").is_file() and (tmp_path / "x" / "done" / "s.wav").is_file()
    assert (tmp_path / "x" / "quarantine" / "bad.wav").is_file()
    assert list(elsewhere.iterdir()) == []
    assert any(Path(os.environ["XDG_CACHE_HOME"], "destatic", "work").iterdir())


def test_run_flags_default_to_the_settings_defaults() -> None:
    # None on every optional flag: the Settings defaults (or weaker sources) apply.
    from destatic.cli import run

    for name, parameter in inspect.signature(run).parameters.items():
        if name not in ("inputs", "audio_only", "verbose"):
            assert parameter.default is None, name


@pytest.mark.parametrize(("arguments", "status"), [(["--help"], 0), (["bogus"], 2)])
def test_main_runs_exit_handlers_and_keeps_the_status(arguments: list[str], status: int) -> None:
    # main() ends the process itself once the command is done: the exit
    # handlers must still run, the output be complete, the status be the command's.
    # Threads are joined first, as Python does: a worker thread still running,
    # and a thread pool left idle (joined by its own exit hook, not a hang).
    code = (
        "import atexit, sys, threading, time\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from destatic.cli import main\n"
        "atexit.register(lambda: print('exit handler ran', flush=True))\n"
        "threading.Thread(target=lambda: (time.sleep(0.5), print('thread joined', flush=True))).start()\n"
        "ThreadPoolExecutor(2).submit(print, 'pool worked', flush=True).result()\n"
        f"sys.argv = ['destatic', *{arguments!r}]\n"
        "main()\n"
        "print('not reached')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == status, done.stderr
    assert "thread joined" in done.stdout and "pool worked" in done.stdout
    assert done.stdout.rstrip().endswith("exit handler ran")
    assert "not reached" not in done.stdout
    if status == 0:
        assert "artifacts" in done.stdout  # the help's last command: nothing was cut off


def _terminated(body: str, send: int | None = signal.SIGTERM) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `body` as a destatic command (TERM_GRACE_S 1 s, TERM_DEADLINE_S 4 s), send it `send` once it prints 'ready'; its end, and the seconds it took."""
    import time

    code = (
        "import atexit, sys, time\n"
        "import destatic.cli as cli\n"
        "cli.TERM_GRACE_S, cli.TERM_DEADLINE_S = 1.0, 4.0\n"
        "@cli.app.command()\n"
        "def stubborn() -> None:\n"
        + "".join(f"    {line}\n" for line in body.splitlines())
        + "sys.argv = ['destatic', 'stubborn']\n"
        "cli.main()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "ready\n", process.communicate(timeout=60)
    sent = time.monotonic()
    if send is not None:
        process.send_signal(send)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), time.monotonic() - sent


def test_sigterm_ends_a_command_that_lost_the_interrupt() -> None:
    # Library code that catches the interrupt (or a finalizer it is raised in) must not keep the command going.
    done, seconds = _terminated("try:\n    print('ready', flush=True)\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
                                "    print('interrupt lost', flush=True)\ntime.sleep(60)")
    assert done.returncode == 143, done.stderr
    assert "interrupt lost" in done.stdout and "after SIGTERM" not in done.stderr
    assert seconds < 3.5, seconds  # raised again after TERM_GRACE_S, well before TERM_DEADLINE_S


def test_sigterm_inside_the_import_machinery_is_put_off_for_a_moment() -> None:
    # Raised between the import lock's acquire and its try, it would leave the lock held (another thread's import then waits).
    # The retry waits 1 s here (so that the line after the handler is reached under load), the regular re-send 6 s.
    done, seconds = _terminated(
        "import os, signal, types\n"
        "cli.TERM_RETRY_S, cli.TERM_GRACE_S, cli.TERM_DEADLINE_S = 1.0, 6.0, 12.0\n"
        "inside_import = types.SimpleNamespace(f_code=types.SimpleNamespace(co_filename='<frozen importlib._bootstrap>'))\n"
        "print('ready', flush=True)\n"
        "signal.getsignal(signal.SIGTERM)(signal.SIGTERM, inside_import)  # the handler raises nothing here\n"
        "os.write(2, b'put off\\n')  # stderr: the test reads stdout's first line only, buffered\n"
        "time.sleep(60)",
        send=None,  # the handler was called above, by hand
    )
    assert done.returncode == 143, done.stderr
    assert "put off" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert seconds < 5, seconds  # raised again after TERM_RETRY_S, before TERM_GRACE_S


def test_ctrl_c_inside_the_import_machinery_is_put_off_for_a_moment() -> None:
    # As SIGTERM above: a leaked import lock would hang the process at exit, and Ctrl-C has no deadline.
    done, seconds = _terminated(
        "import os, signal, types\n"
        "cli.TERM_RETRY_S = 1.0\n"
        "inside_import = types.SimpleNamespace(f_code=types.SimpleNamespace(co_filename='<frozen importlib._bootstrap>'))\n"
        "print('ready', flush=True)\n"
        "signal.getsignal(signal.SIGINT)(signal.SIGINT, inside_import)  # the handler raises nothing here\n"
        "os.write(2, b'put off\\n')\n"
        "time.sleep(60)\n"
        "print('not interrupted', flush=True)",
        send=None,
    )
    assert done.returncode == 130, done.stderr  # Ctrl-C's status, as before
    assert "put off" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "not interrupted" not in done.stdout
    assert 0.9 < seconds < 30, seconds  # raised again after TERM_RETRY_S, not at once and not after the sleep


def test_sigterm_ends_the_process_when_an_exit_handler_blocks() -> None:
    done, seconds = _terminated("atexit.register(time.sleep, 600)\nprint('ready', flush=True)\ntime.sleep(60)")
    assert done.returncode == 143, done.stderr
    assert "destatic: still running 4 s after SIGTERM: ending now" in done.stderr
    assert 3.5 < seconds < 20, seconds


def test_prefects_termination_signal_ends_a_command_as_sigterm_does() -> None:
    # While a flow runs, Prefect's SIGTERM handler raises its own exception in place of ours.
    done, _ = _terminated("from prefect.exceptions import TerminationSignal\nprint('ready', flush=True)\nraise TerminationSignal(15)",
                          send=None)
    assert done.returncode == 143, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


# --- what a new user tripped on (issue 18)


def test_format_means_audio_only_and_the_output_name_must_say_so(in_tmp: Path, media_dir: Path) -> None:
    from destatic.settings import load_settings

    video = media_dir / "video" / "creative_common.mp4"
    result = runner.invoke(app, ["run", str(video), "--format", "flac", "-o", str(in_tmp / "fmt.mp4")])
    assert result.exit_code == 2, result.output
    assert "name it 'fmt.flac'" in " ".join(result.output.replace("│", " ").split())
    assert not (in_tmp / "fmt.mp4").exists()
    assert load_settings(output={"format": "flac"}).output.mode == "audio"
    with pytest.raises(Exception, match="format applies to the audio alone"):
        load_settings(output={"format": "flac", "mode": "remux"})


def test_a_noise_stretch_past_the_end_is_refused_at_start_in_seconds(in_tmp: Path, speech_wav: Path) -> None:
    result = runner.invoke(app, ["run", str(speech_wav), "--noise-start", "100", "--noise-end", "200"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.replace("│", " ").split())
    assert "--noise-start 100 s is past the end of speech.wav" in text and "s long)" in text
    assert not speech_wav.with_name("speech-clean.wav").exists()


@pytest.mark.usefixtures("prefect_harness")
def test_the_report_shows_the_values_used_and_which_were_defaults(in_tmp: Path, speech_wav: Path) -> None:
    from destatic.dsp import default_method

    result = runner.invoke(app, ["run", str(speech_wav), "--reduction-db", "18", "--work", str(in_tmp / "work")])
    assert result.exit_code == 0, result.output
    (report,) = (in_tmp / "work").glob("*/report.md")
    text = report.read_text()
    assert f"| suppression.method | {default_method()} | default |" in text
    assert "| noise.mode | auto | default |" in text
    assert "| suppression.reduction_db | 18.0 | set |" in text
    assert "| suppression.smoothing | 0.94 | default |" in text


def test_artifacts_says_where_it_looked(in_tmp: Path, speech_wav: Path) -> None:
    result = runner.invoke(app, ["artifacts", str(speech_wav), "--work", str(in_tmp / "w")])
    assert result.exit_code == 1
    assert str(in_tmp / "w") in "".join(result.output.split()) and "last-run.json" in result.output


def test_help_lists_choices_and_ranges_without_markup() -> None:
    text = " ".join(runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output.split())
    assert "seed|subtract|wiener|logmmse" in text and "wav|flac|mp3|m4a|ogg|opus" in text
    assert "more than 0, at most 120" in text
    assert "--audio-only <bool>" not in text and "{inputs}" not in text and "{FILE}..." in text
    for command in ([], ["run"], ["watch"], ["profile"], ["artifacts"], ["deploy"], ["cache"]):
        assert "``" not in runner.invoke(app, [*command, "--help"]).output, command


def test_a_bad_environment_value_names_its_variable(in_tmp: Path, speech_wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESTATIC_RUNTIME__RETRIES", "many")
    result = runner.invoke(app, ["run", str(speech_wav)])
    assert result.exit_code == 2
    assert "DESTATIC_RUNTIME__RETRIES" in result.output


def test_runtime_folders_are_ignored_by_git() -> None:
    repo = Path(__file__).resolve().parents[2]
    names = ["work/", "inbox/", "outbox/", "done/", "quarantine/", "out/"]
    done = subprocess.run(["git", "-C", str(repo), "check-ignore", *names], capture_output=True, text=True)
    if done.returncode == 128:
        pytest.skip("not a git checkout")
    assert sorted(done.stdout.split()) == sorted(names)
