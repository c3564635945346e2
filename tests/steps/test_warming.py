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
    ["logmmse", pytest.param("hybrid", marks=pytest.mark.skipif(not learned_available(), reason=f"hybrid needs {LEARNED_NEEDS}"))],
)
def test_a_cold_cache_is_filled_by_other_processes_and_the_child_only_loads(tmp_path: Path, method: str) -> None:
    """warm_dsp with an empty cache: every loop the method uses is a cache hit in the calling process, none a miss.

    For the learned methods that includes DeepFilterNet3's GRU kernel.
    """
    probe = textwrap.dedent(
        f"""
        import json
        from destatic import dsp
        from destatic.dsp import _kernels
        from destatic.steps.warming import warm_dsp

        assert dsp.loops_to_compile()
        warm_dsp({method!r})
        gru_hits = sum(_kernels.gru_steps.stats.cache_hits.values())
        hits = misses = 0
        for value in vars(_kernels).values():
            stats = getattr(value, "stats", None)
            if stats is not None:
                hits += sum(stats.cache_hits.values())
                misses += sum(stats.cache_misses.values())
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
