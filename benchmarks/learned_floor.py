"""What a gain floor costs DeepFilterNet3's output once it is a gain in destatic's frame (issue 30's ninth attempt).

For group a mixtures of chosen noises (``--quick``: the quality benchmark's
subset, both halves) DFN3's own output is framed as destatic frames the input,
and ``|STFT(dfn(x))| / |STFT(x)|``, bounded to ``[floor, 1]``, is applied with
the input's phase by destatic's inverse step, as the learned methods apply it.
Each floor's output is scored as ``quality.py`` scores it, beside DFN3's own.

    python benchmarks/learned_floor.py --noises white VacuumCleaner_1 CopyMachine_2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import quality
import result_cache
from bed_oracle import framed_power

FLOORS_DB = (30.0, 40.0, 50.0, 100.0)


def floored_outputs(noisy: np.ndarray, rate: int, case: quality.Case) -> dict[str, np.ndarray]:
    """DFN3's output, and its gain in destatic's frame applied at each of :data:`FLOORS_DB`."""
    from destatic.dsp.denoising import resolve_profile
    from destatic.dsp.framing import checked_profile
    from destatic.dsp.inverse import apply_gains
    from destatic.dsp.learned import deepfilter

    samples = np.asarray(noisy, np.float32).reshape(-1, 1)
    profile = checked_profile(resolve_profile(samples, rate, quality.noise_argument(case), method="hybrid"), rate, 1)
    learned = deepfilter(samples, rate)
    ratio = np.sqrt(framed_power(learned, profile) / np.maximum(framed_power(samples, profile), 1e-24))
    outputs = {"dfn3": learned[:, 0]}
    for floor_db in FLOORS_DB:
        gains = np.clip(ratio, 10 ** (-floor_db / 20), 1.0).astype(np.float32)
        applied = apply_gains([samples], rate, [gains], profile=profile)
        outputs[f"floor {floor_db:g} dB"] = np.concatenate(list(applied))[:, 0]
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noises", nargs="+", default=["white", "VacuumCleaner_1", "CopyMachine_2"])
    parser.add_argument("--cache", type=Path, default=Path(__file__).parent / "out" / "cache",
                        help="where DFN3's outputs are cached (quality.py's cache)")
    args = parser.parse_args(argv)
    result_cache.install_dfn3_cache(args.cache)
    cases = [case for case in quality.all_cases("a", quick=True) if case.noise_label in args.noises]
    if not cases:
        print(f"no group a item of {args.noises} in the quick subset", file=sys.stderr)
        return 1
    pesq: dict[tuple[str, str, str], list[float]] = {}
    for case in cases:
        noisy, reference, rate, bed = case.load()
        for label, output in floored_outputs(noisy, rate, case).items():
            scores = quality.score_output(case, reference, np.asarray(output, np.float64), rate, bed, noisy)
            pesq.setdefault((case.noise_label, label, case.half), []).append(scores["pesq"])
    labels = ["dfn3", *(f"floor {floor_db:g} dB" for floor_db in FLOORS_DB)]
    print(quality.markdown_table(
        ["noise", *(f"{label} PESQ tune / held" for label in labels)],
        [[noise, *(" / ".join(f"{np.mean(pesq.get((noise, label, half), [np.nan])):.3f}" for half in quality.HALVES)
                   for label in labels)] for noise in args.noises],
    ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
