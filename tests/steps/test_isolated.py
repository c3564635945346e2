"""Steps in a child process without Prefect (destatic.steps.isolated): answers, errors, progress, death, reuse."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import child_helpers
from destatic import media
from destatic.errors import BadInputError, DestaticError
from destatic.steps import isolated

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def children_find_the_helpers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    isolated.close_children()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(HERE), os.environ.get("PYTHONPATH")))))
    yield
    isolated.close_children()


def test_a_child_holds_no_prefect_and_is_reused_while_warm() -> None:
    import prefect  # noqa: F401  (loaded here, as in a flow's process)

    first, prefect_there, matplotlib_there = isolated.call(child_helpers.loaded_modules)
    again, *_ = isolated.call(child_helpers.loaded_modules)
    other_kind, *_ = isolated.call(child_helpers.loaded_modules, child="report")
    assert first != os.getpid() and not prefect_there and not matplotlib_there
    assert again == first and other_kind != first


def test_the_dsp_child_holds_no_settings_model_after_its_warm_up_and_a_profile(tmp_path: Path) -> None:
    """pydantic (about 20 MiB of the DSP child's peak) stays in the flow's process: nothing the child runs needs the settings."""
    import numpy as np
    import soundfile as sf

    from destatic.settings import load_settings
    from destatic.steps import profile, warming
    from destatic.steps.records import AudioFile

    wav = tmp_path / "audio.wav"
    sf.write(wav, np.random.default_rng(0).standard_normal((48000, 2)).astype(np.float32) * 0.01, 48000, subtype="FLOAT")
    audio = AudioFile(wav, 48000, 2, 48000)
    isolated.warm("steps", warming.warm_dsp, "logmmse")
    isolated.call(profile.run, audio, tmp_path / "profile.npz", **profile.arguments(load_settings()))
    assert "pydantic" in sys.modules and not isolated.call(child_helpers.holds, "pydantic")


def test_the_report_child_loads_none_of_the_compiled_loops(tmp_path: Path) -> None:
    """Its spectrograms are framed by numpy: numba's compiled code of ours (about 50 MiB) stays out of it."""
    from destatic.steps import report

    isolated.call(report.warm_up, tmp_path / ".numba", child="report")
    assert not isolated.call(child_helpers.holds, "destatic.dsp._kernels", child="report")


def test_the_dsp_child_keeps_its_threads_in_one_arena_and_dfn3s_tensors_in_its_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("MALLOC_")]:  # the caller's own settings win (dask's nanny sets one)
        monkeypatch.delenv(name)
    steps, report = isolated.call(child_helpers.allocator_settings), isolated.call(child_helpers.allocator_settings, child="report")
    assert steps == {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": str(4 << 20), "MALLOC_TRIM_THRESHOLD_": str(4 << 20)}
    assert report == {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": str(2 << 20), "MALLOC_TRIM_THRESHOLD_": str(2 << 20)}


def test_a_warmed_child_is_the_one_the_first_call_takes() -> None:
    isolated.warm("steps", child_helpers.loaded_modules)
    isolated.warm("steps", child_helpers.loaded_modules)  # one is starting already: no second
    pid, *_ = isolated.call(child_helpers.loaded_modules)
    assert [child.process.pid for child in isolated._idle["steps"]] == [pid]


def test_a_child_still_warming_when_children_are_closed_is_not_reused() -> None:
    import time

    isolated.warm("steps", child_helpers.pid_after, 1.0)
    time.sleep(0.2)
    isolated.close_children()
    while isolated._warming:
        time.sleep(0.05)
    assert isolated._idle.get("steps", []) == []
    first = isolated.call(child_helpers.pid_after, 0.0)
    assert isolated.call(child_helpers.pid_after, 0.0) == first, "a child started after the close is kept warm for the next call"


def test_waiting_for_a_warming_child_gives_up_as_soon_as_asked() -> None:
    """Work begun ahead waits for the child's warm-up unless the process is exiting (the first run compiles for 10-20 s)."""
    import threading
    import time

    isolated.warm("steps", child_helpers.pid_after, 3.0)
    exiting = threading.Event()
    threading.Timer(0.5, exiting.set).start()
    started = time.monotonic()
    assert not isolated.warmed("steps", unless=exiting.is_set)
    assert time.monotonic() - started < 2.0
    assert isolated.warmed("steps", unless=lambda: False), "it waits out the warm-up when nothing asks it to stop"
    assert not isolated._warming


def test_errors_come_back_as_themselves_with_the_childs_traceback(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="not what it says") as raised:
        isolated.call(child_helpers.refuse, tmp_path / "odd name.wav")
    assert raised.value.path == tmp_path / "odd name.wav"
    assert any("in the step's process" in note and "refuse" in note for note in raised.value.__notes__)


def test_progress_is_relayed_in_order() -> None:
    seen: list[tuple[int, int]] = []
    assert isolated.call(child_helpers.count, 5, on_progress=lambda done, total: seen.append((done, total))) == 5
    assert seen == [(done, 5) for done in range(1, 6)]


def test_the_callers_ffmpeg_time_limit_holds_in_the_child() -> None:
    assert isolated.call(child_helpers.time_limit) is None
    with media.time_limit(12.5):
        assert isolated.call(child_helpers.time_limit) == 12.5


def test_the_child_works_in_the_callers_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isolated.call(child_helpers.current_folder) == os.getcwd()
    monkeypatch.chdir(tmp_path)  # the same (warm) child, another folder: relative paths follow
    assert isolated.call(child_helpers.current_folder) == str(tmp_path)


def test_a_child_that_dies_is_an_error_and_the_next_call_gets_a_new_one() -> None:
    before, *_ = isolated.call(child_helpers.loaded_modules)
    with pytest.raises(DestaticError, match=r"die ended without an answer \(signal 9\)"):
        isolated.call(child_helpers.die)
    after, *_ = isolated.call(child_helpers.loaded_modules)
    assert after != before and not psutil.pid_exists(before)


def test_an_answer_that_does_not_pickle_is_an_error_not_a_hang() -> None:
    with pytest.raises(DestaticError, match="cannot be sent back"):
        isolated.call(child_helpers.unpicklable)
    assert isolated.call(child_helpers.count, 1, on_progress=lambda *_: None) == 1  # the child lives on


def test_children_exit_with_their_parent(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time, child_helpers
            from pathlib import Path
            from destatic.steps import isolated
            pid, *_ = isolated.call(child_helpers.loaded_modules)
            Path({str(pid_file)!r}).write_text(str(pid))
            time.sleep(60)
        """)],
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.1)
    child = int(pid_file.read_text())
    assert psutil.pid_exists(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.1)


def test_a_child_warmed_for_a_method_imports_nothing_more_in_its_first_clean() -> None:
    from destatic import dsp

    isolated.warm("steps", dsp.warm_up, "logmmse")
    assert isolated.call(child_helpers.modules_a_first_clean_adds, "logmmse") == []
    isolated.close_children()
    assert any(name.startswith(("numba", "scipy")) for name in isolated.call(child_helpers.modules_a_first_clean_adds, "logmmse")), (
        "a cold child imports the compiled loops in its first clean"
    )


def test_the_report_warm_up_loads_the_plotting_libraries_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from destatic.steps import plots

    monkeypatch.chdir(tmp_path)
    isolated.call(plots.warm_up, tmp_path / "fallback", child="report")
    assert isolated.call(child_helpers.loaded, "matplotlib.pyplot", "librosa.display", "PIL.Image", child="report") == [True, True, True]
    assert list(tmp_path.iterdir()) == []


def test_a_closed_child_exits_cleanly() -> None:
    isolated.call(child_helpers.loaded_modules)
    (child,) = isolated._idle["steps"]
    isolated.close_children()
    assert child.process.returncode == 0


def test_a_child_whose_parent_stopped_reading_exits_without_a_traceback(tmp_path: Path) -> None:
    """The caller exits while a step runs (``watch --once`` after its last file): the answer meets a closed pipe."""
    import pickle

    child = subprocess.Popen(
        [sys.executable, "-c", isolated._SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(HERE), os.environ.get("PYTHONPATH"))))},
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdout.close()  # the parent's end of the answers, gone before the answer
    child.stdin.write(pickle.dumps(("time", "sleep", (0.5,), {}, str(tmp_path), None, False)))
    child.stdin.flush()
    _, errors = child.communicate(timeout=60)
    assert child.returncode == 0
    assert b"Traceback" not in errors, errors.decode(errors="replace")


def test_a_reused_report_child_does_not_grow_with_each_plot(tmp_path: Path) -> None:
    """The report's child, reused from file to file, collects each step's figures: its memory stays flat.

    Without the collection after each call it grew by about 10 MiB per spectrogram drawn.
    """
    import numpy as np
    import soundfile as sf

    from destatic.steps import plots

    wav = tmp_path / "noise.wav"
    sf.write(wav, np.random.default_rng(5).standard_normal((20 * 48000, 2)).astype(np.float32) * 0.01, 48000, subtype="FLOAT")
    resident = []
    for index in range(6):
        isolated.call(plots.plot_spectrograms, wav, wav, tmp_path / f"plot{index}.png", start=2.0, seconds=15.0, child="report")
        child = psutil.Process(isolated.call(child_helpers.loaded_modules, child="report")[0])
        resident.append(child.memory_info().rss / 2**20)
    assert max(resident[2:]) - resident[1] < 12, f"the child grew from plot to plot: {[round(mib) for mib in resident]} MiB"
