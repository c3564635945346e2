"""The DSP child's warm-up: with numba's cache empty, the loops are compiled in other processes, and the child only loads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from destatic.dsp import LEARNED_NEEDS, learned_available


@pytest.mark.parametrize(
    "method",
    [
        "logmmse",
        pytest.param(  # compiles every loop of DFN3's engine too (about 25 s): slow
            "hybrid", marks=[pytest.mark.slow, pytest.mark.skipif(not learned_available(), reason=f"hybrid needs {LEARNED_NEEDS}")]
        ),
    ],
)
def test_a_cold_cache_is_filled_by_other_processes_and_the_child_only_loads(tmp_path: Path, method: str) -> None:
    """warm_dsp with an empty cache: every loop the method uses is a cache hit in the calling process, none a miss,
    in the warm-up and then in the profile, subtract and inverse steps of a file.

    For the learned methods that includes DeepFilterNet3's GRU kernel. A loop first compiled in a step would keep
    the compiler's memory in the DSP child (its peak rose from 284 to 297 MiB in a first run so).
    """
    probe = textwrap.dedent(
        f"""
        import gc, json
        from pathlib import Path
        import numpy as np, soundfile as sf
        from numba.core.registry import CPUDispatcher
        from destatic import dsp, steps
        from destatic.dsp import _kernels
        from destatic.settings import load_settings
        from destatic.steps.warming import warm_dsp

        assert dsp.loops_to_compile()
        warm_dsp({method!r})
        work = Path({str(tmp_path / "work")!r})
        work.mkdir()
        sf.write(work / "in.wav", np.random.default_rng(1).standard_normal((3 * 48000, 2)).astype(np.float32) * 0.01, 48000)
        settings = load_settings(paths={{"work": work}}, suppression={{"method": {method!r}}})
        audio = steps.extract.run(work / "in.wav", work / "audio.wav")
        noise = steps.profile.run(audio, work / "profile.npz", **steps.profile.arguments(settings))
        gains = steps.subtract.run(audio, noise, work / "gains.npy", {method!r}, settings.suppression.options())
        steps.inverse.run(audio, gains, noise, work / "cleaned.wav")
        gru_hits = sum(_kernels.gru_steps.stats.cache_hits.values())
        hits = misses = 0
        for value in gc.get_objects():
            if isinstance(value, CPUDispatcher):
                hits += sum(value.stats.cache_hits.values())
                misses += sum(value.stats.cache_misses.values())
        print(json.dumps({{"hits": hits, "misses": misses, "gru_hits": gru_hits, "compiled": not dsp.loops_to_compile()}}))
        """
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["compiled"] and counts["hits"] > 0, counts
    assert counts["misses"] == 0, f"the warmed process compiled loops itself: {counts}"
    assert (counts["gru_hits"] > 0) == (method == "hybrid"), counts
