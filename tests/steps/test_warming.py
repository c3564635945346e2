"""The DSP child's warm-up: with numba's cache empty, the loops are compiled in other processes, and the child only loads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path


def test_a_cold_cache_is_filled_by_other_processes_and_the_child_only_loads(tmp_path: Path) -> None:
    """warm_dsp with an empty cache: every loop the classic method uses is a cache hit in the calling process, none a miss."""
    probe = textwrap.dedent(
        """
        import json
        from destatic import dsp
        from destatic.dsp import _kernels
        from destatic.steps.warming import warm_dsp

        assert dsp.loops_to_compile()
        warm_dsp("logmmse")
        hits = misses = 0
        for value in vars(_kernels).values():
            stats = getattr(value, "stats", None)
            if stats is not None:
                hits += sum(stats.cache_hits.values())
                misses += sum(stats.cache_misses.values())
        print(json.dumps({"hits": hits, "misses": misses, "compiled": not dsp.loops_to_compile()}))
        """
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["compiled"] and counts["hits"] > 0, counts
    assert counts["misses"] == 0, f"the warmed process compiled loops itself: {counts}"
