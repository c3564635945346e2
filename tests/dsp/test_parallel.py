"""Channels filtered in threads give exactly what one thread gives; no process is forked."""

from __future__ import annotations

import os
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
from destatic.dsp.parallel import THREAD_NAME, resolve_jobs, run_channel_groups
from destatic.errors import BadInputError

SR = 16000
CLASSIC = "logmmse"
"""The thread-split tests name a classic method: the hybrid filters the channels of a stream of two or more together."""


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


def channel_threads():
    """This process's live channel threads."""
    return [thread for thread in threading.enumerate() if thread.name == THREAD_NAME and thread.is_alive()]


def child_processes():
    return {child.pid for child in psutil.Process().children(recursive=True)}


def blocks_of(audio, size):
    return [audio[i : i + size] for i in range(0, audio.shape[0], size)]


def joined(chunks, axis):
    return np.concatenate(list(chunks), axis=axis)


@pytest.mark.parametrize("n_jobs", [2, 3])
def test_stream_is_identical_with_threads(multichannel, n_jobs):
    serial = joined(denoise_stream(blocks_of(multichannel, 5000), SR, noise=(0, 1), n_jobs=1), 0)
    parallel = joined(denoise_stream(blocks_of(multichannel, 5000), SR, noise=(0, 1), n_jobs=n_jobs), 0)
    assert parallel.shape == multichannel.shape
    np.testing.assert_array_equal(parallel, serial)


def test_two_step_path_is_identical_with_threads(multichannel):
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
    """A store for compute_gains_by_group, with the thread that stored each channel."""
    stored = np.zeros(shape, np.float32)
    writers = [None] * shape[0]

    def store(group, first_frame, gains):
        stored[group, first_frame : first_frame + gains.shape[1]] = gains
        writers[group] = [threading.get_ident()] * (group.stop - group.start)

    return stored, writers, store


@pytest.mark.parametrize("n_jobs", [1, 2, 3])
def test_groups_reading_their_own_input_give_the_same_gains_and_output(multichannel, n_jobs):
    profile = resolve_profile(multichannel, SR, method=CLASSIC)
    blocks = blocks_of(multichannel, 3001)
    gains = joined(compute_gains(blocks, SR, profile, method=CLASSIC), 1)
    stored, writers, store = _stored_gains(gains.shape)

    def blocks_for(group):
        return (block[:, group] for block in blocks)

    progress = list(compute_gains_by_group(blocks_for, 3, SR, profile, store, n_jobs=n_jobs, method=CLASSIC))
    np.testing.assert_array_equal(stored, gains)
    assert progress == sorted(progress) and progress[-1] == gains.shape[1]
    main = threading.get_ident()
    assert set(writers) == {main} if n_jobs == 1 else len(set(writers) - {main}) == n_jobs

    def gains_for(group):
        return (gains[group, i : i + 37] for i in range(0, gains.shape[1], 37))

    expected = joined(apply_gains(blocks, SR, [gains], profile=profile), 0)
    output = joined(apply_gains_by_group(blocks_for, gains_for, 3, SR, profile=profile, n_jobs=n_jobs), 0)
    np.testing.assert_array_equal(output, expected)
    assert channel_threads() == []


def test_a_failing_group_raises_its_error_and_stops_the_others(multichannel):
    profile = resolve_profile(multichannel, SR, method=CLASSIC)
    blocks = blocks_of(multichannel, 2000)

    def blocks_for(group):
        for index, block in enumerate(blocks):
            if group.start == 0 and index == 3:
                raise OSError("disk gone")
            yield block[:, group]

    with pytest.raises(OSError, match="disk gone"):
        list(compute_gains_by_group(blocks_for, 3, SR, profile, lambda *args: None, n_jobs=3, method=CLASSIC))
    with pytest.raises(ParameterError, match="2 channels but earlier blocks have 1|1 channels"):
        list(compute_gains_by_group(lambda group: (block[:, :2] for block in blocks), 3, SR, profile, lambda *args: None, n_jobs=3, method=CLASSIC))
    assert channel_threads() == []


def test_a_group_error_comes_back_as_itself(tmp_path):
    bad = tmp_path / "clip.mp4"
    raised_in_group = []

    def failing(group):
        if group.start:
            error = BadInputError(bad, "truncated in the middle")
            raised_in_group.append(error)
            raise error
        yield 1

    with pytest.raises(BadInputError, match="clip.mp4: truncated in the middle") as raised:
        list(run_channel_groups(failing, 2, n_jobs=2))
    assert raised.value is raised_in_group[0]
    assert raised.value.path == bad and raised.value.reason == "truncated in the middle"


def test_a_stopped_consumer_stops_groups_that_read_their_own_input(multichannel):
    profile = resolve_profile(multichannel, SR)
    gains = joined(compute_gains([multichannel], SR, profile), 1)
    closed = []

    def blocks_for(group):
        try:
            yield from (block[:, group] for block in blocks_of(multichannel, 500))
        finally:
            closed.append(group)

    stream = apply_gains_by_group(
        blocks_for,
        lambda group: [gains[group]],
        3,
        SR,
        profile=profile,
        n_jobs=3,
    )
    next(stream)
    assert len(channel_threads()) == 3
    stream.close()
    assert channel_threads() == []
    assert sorted(group.start for group in closed) == [0, 1, 2]


def test_channel_threads_work_inside_another_thread(multichannel):
    """A run started from a worker thread (as in a Prefect task) works and gives the same result."""
    results = {}

    def work():
        results["parallel"] = destatic.denoise(multichannel, SR, n_jobs=2)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    np.testing.assert_array_equal(results["parallel"], destatic.denoise(multichannel, SR, n_jobs=1))


def test_wrong_gains_are_refused_and_the_threads_stopped(multichannel):
    profile = resolve_profile(multichannel, SR)
    blocks = blocks_of(multichannel, 4000)
    gains = joined(compute_gains(blocks, SR, profile), 1)
    with pytest.raises(ParameterError, match="left over"):
        list(apply_gains(blocks[:-2], SR, [gains], profile=profile, n_jobs=2))
    with pytest.raises(ParameterError, match="ran out"):
        list(apply_gains(blocks, SR, [gains[:, :-5]], profile=profile, n_jobs=2))
    assert channel_threads() == []


def test_a_stopped_consumer_stops_the_threads(multichannel):
    stream = denoise_stream(blocks_of(multichannel, 2000), SR, n_jobs=2, method=CLASSIC)
    next(stream)
    assert len(channel_threads()) == 2
    stream.close()
    assert channel_threads() == []


def test_mono_and_short_audio_stay_in_this_process(rng):
    assert resolve_jobs(None, 1) == 1
    assert resolve_jobs(4, 2) == 2
    mono = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    np.testing.assert_array_equal(destatic.denoise(mono, SR, n_jobs=2), destatic.denoise(mono, SR))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_n_jobs_is_refused(bad):
    with pytest.raises(ParameterError, match="n_jobs"):
        resolve_jobs(bad, 2)


def test_no_process_is_started(multichannel):
    """Every group runs in this process (its own thread): nothing is forked."""
    before = child_processes()

    def work(group):
        for _ in range(3):
            yield os.getpid(), threading.current_thread().name

    results = list(run_channel_groups(work, 3, n_jobs=3))
    assert {pid for batch in results for pid, _ in batch} == {os.getpid()}
    assert {name for batch in results for _, name in batch} == {THREAD_NAME}
    destatic.denoise(multichannel, SR, n_jobs=3)
    assert child_processes() <= before


DEADLOCK = """
import threading, time, numpy as np, soundfile as sf
from destatic.dsp import compute_gains_by_group, resolve_profile
path = {path!r}
audio = (0.1 * np.random.default_rng(0).standard_normal((16000 * 3, 2))).astype(np.float32)
sf.write(path, audio, 16000, subtype="FLOAT")
profile = resolve_profile(audio, 16000, (0, 1))
held = threading.Event()

def hold():  # another file's step, opening a sound file while this one's channels start
    with sf.SoundFile._sf_error_lock:
        held.set()
        time.sleep(1.0)

threading.Thread(target=hold).start()
held.wait()

def blocks(group):
    with sf.SoundFile(path) as handle:
        for block in handle.blocks(4096, dtype="float32", always_2d=True):
            yield block[:, group]

print(list(compute_gains_by_group(blocks, 2, 16000, profile, lambda *args: None, method="logmmse", n_jobs=2))[-1])
"""


def test_a_lock_held_by_another_thread_when_the_channels_start_cannot_hang_them(tmp_path):
    """The batch-run hang: one thread holds soundfile's open lock while another starts channel workers that open files.

    Forked channel processes inherited the lock held and waited for it
    forever (a 30 s webm in a batch of 8 hung for 15 minutes); threads wait
    until the other thread lets go of it.
    """
    done = subprocess.run(
        [sys.executable, "-c", DEADLOCK.format(path=str(tmp_path / "stereo.wav"))],
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert done.stdout.strip() == "191"


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
