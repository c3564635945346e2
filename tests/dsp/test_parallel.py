"""Channels filtered in child processes give exactly what one process gives."""

from __future__ import annotations

import mmap
import multiprocessing
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import psutil
import pytest

import destatic
from destatic import ParameterError
from destatic.dsp import (
    apply_gains,
    apply_gains_by_group,
    compute_gains,
    compute_gains_by_group,
    denoise_stream,
    resolve_profile,
)
from destatic.dsp.parallel import resolve_jobs, run_channel_groups
from destatic.errors import BadInputError

SR = 16000


@pytest.fixture
def multichannel(rng):
    """Three channels of noise with different harmonic 'voices' after a 1 s lead-in."""
    t = np.arange(4 * SR) / SR
    voices = [
        (t > 1.0) * (np.sin(2 * np.pi * 2 * t) > 0) * np.sin(2 * np.pi * f * t)
        for f in (150.0, 210.0, 330.0)
    ]
    noise = 0.05 * rng.standard_normal((t.size, 3))
    return (0.3 * np.stack(voices, axis=1) + noise).astype(np.float32)


def running_children():
    """Live descendants of this process."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def blocks_of(audio, size):
    return [audio[i : i + size] for i in range(0, audio.shape[0], size)]


def joined(chunks, axis):
    return np.concatenate(list(chunks), axis=axis)


@pytest.mark.parametrize("n_jobs", [2, 3])
def test_stream_is_identical_with_child_processes(multichannel, n_jobs):
    serial = joined(denoise_stream(blocks_of(multichannel, 5000), SR, noise=(0, 1), n_jobs=1), 0)
    parallel = joined(denoise_stream(blocks_of(multichannel, 5000), SR, noise=(0, 1), n_jobs=n_jobs), 0)
    assert parallel.shape == multichannel.shape
    np.testing.assert_array_equal(parallel, serial)


def test_two_step_path_is_identical_with_child_processes(multichannel):
    profile = resolve_profile(multichannel, SR)
    blocks = blocks_of(multichannel, 3001)
    gains = joined(compute_gains(blocks, SR, profile, n_jobs=1), 1)
    np.testing.assert_array_equal(joined(compute_gains(blocks, SR, profile, n_jobs=2), 1), gains)
    chunks = [gains[:, i : i + 37] for i in range(0, gains.shape[1], 37)]
    serial = joined(apply_gains(blocks, SR, chunks, profile=profile, n_jobs=1), 0)
    parallel = joined(apply_gains(blocks, SR, chunks, profile=profile, n_jobs=2), 0)
    np.testing.assert_array_equal(parallel, serial)
    np.testing.assert_allclose(serial, destatic.denoise(multichannel, SR, noise=profile), atol=1e-6)


def _stored_gains(shape):
    """A store for compute_gains_by_group writing into shared memory, with the process that stored each channel."""
    stored = np.frombuffer(mmap.mmap(-1, int(np.prod(shape)) * 4), np.float32).reshape(shape)
    writers = np.frombuffer(mmap.mmap(-1, shape[0] * 8), np.int64)

    def store(group, first_frame, gains):
        stored[group, first_frame : first_frame + gains.shape[1]] = gains
        writers[group] = os.getpid()

    return stored, writers, store


@pytest.mark.parametrize("n_jobs", [1, 2, 3])
def test_groups_reading_their_own_input_give_the_same_gains_and_output(multichannel, n_jobs):
    profile = resolve_profile(multichannel, SR)
    blocks = blocks_of(multichannel, 3001)
    gains = joined(compute_gains(blocks, SR, profile), 1)
    stored, writers, store = _stored_gains(gains.shape)

    def blocks_for(group):
        return (block[:, group] for block in blocks)

    progress = list(compute_gains_by_group(blocks_for, 3, SR, profile, store, n_jobs=n_jobs))
    np.testing.assert_array_equal(stored, gains)
    assert progress == sorted(progress) and progress[-1] == gains.shape[1]
    assert set(writers) == {os.getpid()} if n_jobs == 1 else len(set(writers) - {os.getpid()}) == n_jobs

    def gains_for(group):
        return (gains[group, i : i + 37] for i in range(0, gains.shape[1], 37))

    expected = joined(apply_gains(blocks, SR, [gains], profile=profile), 0)
    output = joined(apply_gains_by_group(blocks_for, gains_for, 3, SR, profile=profile, n_jobs=n_jobs), 0)
    np.testing.assert_array_equal(output, expected)


def test_a_failing_group_raises_its_error_and_stops_the_others(multichannel):
    profile = resolve_profile(multichannel, SR)
    blocks = blocks_of(multichannel, 2000)
    before = running_children()

    def blocks_for(group):
        for index, block in enumerate(blocks):
            if group.start == 0 and index == 3:
                raise OSError("disk gone")
            yield block[:, group]

    with pytest.raises(OSError, match="disk gone"):
        list(compute_gains_by_group(blocks_for, 3, SR, profile, lambda *args: None, n_jobs=3))
    with pytest.raises(ParameterError, match="2 channels but earlier blocks have 1|1 channels"):
        list(compute_gains_by_group(lambda group: (block[:, :2] for block in blocks), 3, SR, profile, lambda *args: None, n_jobs=3))
    assert running_children() <= before


def _refuse_to_load():
    raise ValueError("no way back")


class _Unloadable:
    """Pickles, but cannot be unpickled."""

    def __reduce__(self):
        return (_refuse_to_load, ())


def test_a_group_error_comes_back_whole_and_an_unreadable_reply_is_an_error(tmp_path):
    bad = tmp_path / "clip.mp4"

    def failing(group):
        if group.start:
            raise BadInputError(bad, "truncated in the middle")
        yield 1

    with pytest.raises(BadInputError, match="clip.mp4: truncated in the middle") as raised:
        list(run_channel_groups(failing, 2, n_jobs=2))
    assert raised.value.path == bad and raised.value.reason == "truncated in the middle"
    with pytest.raises(RuntimeError, match="cannot be read: no way back"):
        list(run_channel_groups(lambda group: iter([_Unloadable()]), 2, n_jobs=2))


def test_a_stopped_consumer_stops_groups_that_read_their_own_input(multichannel):
    profile = resolve_profile(multichannel, SR)
    gains = joined(compute_gains([multichannel], SR, profile), 1)
    before = running_children()
    stream = apply_gains_by_group(
        lambda group: (block[:, group] for block in blocks_of(multichannel, 500)),
        lambda group: [gains[group]],
        3,
        SR,
        profile=profile,
        n_jobs=3,
    )
    next(stream)
    assert len(running_children() - before) == 3
    stream.close()
    assert running_children() <= before


def test_child_processes_work_beside_other_threads(multichannel):
    """Children are forked from a process running other threads (as in a Prefect task) and work."""
    results = {}

    def work():
        results["parallel"] = destatic.denoise(multichannel, SR, n_jobs=2)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    np.testing.assert_array_equal(results["parallel"], destatic.denoise(multichannel, SR, n_jobs=1))


def test_wrong_gains_are_refused_and_children_stopped(multichannel):
    profile = resolve_profile(multichannel, SR)
    blocks = blocks_of(multichannel, 4000)
    gains = joined(compute_gains(blocks, SR, profile), 1)
    before = running_children()
    with pytest.raises(ParameterError, match="left over"):
        list(apply_gains(blocks[:-2], SR, [gains], profile=profile, n_jobs=2))
    with pytest.raises(ParameterError, match="ran out"):
        list(apply_gains(blocks, SR, [gains[:, :-5]], profile=profile, n_jobs=2))
    assert running_children() <= before


def test_a_stopped_consumer_stops_the_children(multichannel):
    before = running_children()
    stream = denoise_stream(blocks_of(multichannel, 2000), SR, n_jobs=2)
    next(stream)
    assert len(running_children() - before) == 2
    stream.close()
    assert running_children() <= before


def test_mono_and_short_audio_stay_in_this_process(rng):
    assert resolve_jobs(None, 1) == 1
    assert resolve_jobs(4, 2) == 2
    mono = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    np.testing.assert_array_equal(destatic.denoise(mono, SR, n_jobs=2), destatic.denoise(mono, SR))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_n_jobs_is_refused(bad):
    with pytest.raises(ParameterError, match="n_jobs"):
        resolve_jobs(bad, 2)


def _jobs_in_daemon(answer):
    answer.put(resolve_jobs(None, 8))


def test_a_daemonic_process_filters_in_itself():
    context = multiprocessing.get_context("fork")
    answer = context.Queue()
    process = context.Process(target=_jobs_in_daemon, args=(answer,), daemon=True)
    process.start()
    assert answer.get(timeout=30) == 1
    process.join()


KILLED_PARENT = """
import sys, time
import numpy as np
from destatic.dsp import denoise_stream

def endless():
    rng = np.random.default_rng(0)
    while True:
        yield (0.1 * rng.standard_normal((4000, 2))).astype(np.float32)
        time.sleep(0.05)

if __name__ == "__main__":
    stream = denoise_stream(endless(), 16000, noise=np.zeros((1000, 2), np.float32), method="logmmse", n_jobs=2)
    next(stream)
    print("running", flush=True)
    for _ in stream:
        pass
"""


def test_children_stop_when_their_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(KILLED_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "running"
        children = psutil.Process(parent.pid).children(recursive=True)
        assert len(children) >= 2
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        gone, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, f"children still running after their parent was killed: {alive}"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_in_memory_children_report_their_errors(multichannel):
    with pytest.raises(ParameterError, match="max_reduction_db"):
        destatic.denoise(multichannel, SR, n_jobs=2, max_reduction_db=-5)


def test_in_memory_result_with_children_equals_one_process(multichannel):
    serial = destatic.denoise(multichannel, SR, noise=(0, 1), n_jobs=1, residue=True)
    parallel = destatic.denoise(multichannel, SR, noise=(0, 1), n_jobs=3, residue=True)
    assert parallel.dtype == np.float32 and parallel.flags.writeable
    np.testing.assert_array_equal(parallel, serial)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_an_empty_stream_yields_nothing_whatever_the_profile(multichannel, n_jobs):
    profile = resolve_profile(multichannel, SR)
    assert list(compute_gains(iter([]), SR, profile, n_jobs=n_jobs)) == []
    assert list(denoise_stream(iter([]), SR, noise=profile, n_jobs=n_jobs)) == []
    assert list(apply_gains(iter([]), SR, iter([]), profile=profile, n_jobs=n_jobs)) == []
