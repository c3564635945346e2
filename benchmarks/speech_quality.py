"""Does destatic's speech-quality score (DNSMOS P.835 OVRL on voice frames) tell which outputs are worse?

The speech items of ``quality.py --quick`` (group a: speech under real and
synthetic noises after a 1 s lead-in; group b: the NOIZEUS and VoiceBank
noisy/clean pairs, speech from the start), with its tuning and held-out
halves, are cleaned by several methods, and the noisy input itself is kept
as one more "method". Each output is scored as the pipeline scores it
(:func:`destatic.steps.quality.score_voice`, on WAVs, with the report's frame
energies) and by PESQ against the clean speech. Printed:

- the rank correlation (Spearman) of the output's OVRL with PESQ, over every
  item and method, and that of the change from input to output with the
  change in PESQ;
- the flag threshold chosen on the tuning half (best F1 at finding the
  worst quarter by PESQ)
  and reported on the other half beside it: how many are flagged, and how
  many of those are in that half's worst quarter by PESQ;
- what the score costs: its wall and CPU time on a 60 s file.

Run ``python benchmarks/speech_quality.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

import common
from quality import Case, all_cases

METHODS = ("noisy", "logmmse", "wiener", "subtract", "default")
THRESHOLDS = np.round(np.arange(1.5, 3.51, 0.05), 2)


def _score_item(case: Case) -> list[dict[str, object]]:
    """Every method's output of one item: its PESQ, and the pipeline's quality record of input and output."""
    import destatic
    from destatic.steps.quality import score_voice
    from destatic.steps.report import LEVEL_FRAME_S, _paired_energies, _quiet

    noisy, clean, rate = case.load()
    start = int(case.lead_in_s * rate)
    noise = (0.0, case.lead_in_s) if case.lead_in_s else None
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        before_wav = Path(scratch) / "before.wav"
        sf.write(before_wav, noisy[start:].astype(np.float32), rate, subtype="FLOAT")
        for method in METHODS:
            output = noisy if method == "noisy" else destatic.denoise(noisy, rate, noise=noise, method=None if method == "default" else method)
            after_wav = Path(scratch) / "after.wav"
            sf.write(after_wav, np.asarray(output[start:], dtype=np.float32), rate, subtype="FLOAT")
            before, _ = _paired_energies(before_wav, after_wav)
            record = score_voice(before_wav, after_wav, before, _quiet(before), LEVEL_FRAME_S)
            pesq = common.score(clean[start:], np.asarray(output[start:], dtype=np.float64), rate)["pesq"]
            rows.append({
                "case": case.name, "half": case.half, "method": method, "pesq": pesq,
                "ovrl": record.get("output", {}).get("ovrl", np.nan), "input_ovrl": record.get("input", {}).get("ovrl", np.nan),
            })
    return rows


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    keep = np.isfinite(x) & np.isfinite(y)
    ranks = [np.argsort(np.argsort(v[keep])).astype(float) for v in (x, y)]
    return float(np.corrcoef(*ranks)[0, 1])


def _flagging(rows: list[dict[str, object]], threshold: float) -> tuple[int, int, int]:
    """Flagged outputs, how many of them are in the worst quarter by PESQ, and that quarter's size."""
    pesq = np.array([row["pesq"] for row in rows], dtype=float)
    ovrl = np.array([row["ovrl"] for row in rows], dtype=float)
    worst = pesq <= np.nanquantile(pesq, 0.25)
    flagged = np.isfinite(ovrl) & (ovrl < threshold)
    return int(flagged.sum()), int((flagged & worst).sum()), int(worst.sum())


def _f1(rows: list[dict[str, object]], threshold: float) -> float:
    flagged, hits, worst = _flagging(rows, threshold)
    return 0.0 if hits == 0 else 2 * hits / (flagged + worst)


def _cost() -> tuple[float, float]:
    """Wall and CPU seconds of the score on a 60 s file (input and output), the model already loaded as in a warm child."""
    from destatic.dsp.quality import speech_quality
    from destatic.steps.quality import score_voice
    from destatic.steps.report import LEVEL_FRAME_S, _paired_energies, _quiet

    speech_quality(np.zeros(16000, np.float32))  # load the model, as the report's child has on a second file
    rng = np.random.default_rng(1)
    rate = 48000
    talk = np.repeat(rng.normal(0, 0.2, 60 * 4) > 0, rate // 4)  # bursts of sound and silence
    noisy = (rng.normal(0, 0.01, 60 * rate) + talk * rng.normal(0, 0.2, 60 * rate)).astype(np.float32)
    with tempfile.TemporaryDirectory() as scratch:
        wav = Path(scratch) / "a.wav"
        sf.write(wav, np.stack([noisy, noisy], axis=1), rate, subtype="FLOAT")
        wall, cpu = time.perf_counter(), time.process_time()
        before, _ = _paired_energies(wav, wav)
        score_voice(wav, wav, before, _quiet(before), LEVEL_FRAME_S)
        return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one item in four")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    common.require_media()
    cases = all_cases("ab", quick=True)[::4 if args.quick else 1]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = [row for item in pool.map(_score_item, cases) for row in item]
    pesq = np.array([row["pesq"] for row in rows], dtype=float)
    ovrl = np.array([row["ovrl"] for row in rows], dtype=float)
    by_case: dict[str, dict[str, dict[str, object]]] = {}
    for row in rows:
        by_case.setdefault(str(row["case"]), {})[str(row["method"])] = row
    deltas = [(row["ovrl"] - row["input_ovrl"], row["pesq"] - methods["noisy"]["pesq"])
              for methods in by_case.values() for name, row in methods.items() if name != "noisy"]
    delta_rho = _spearman(*(np.array(column, dtype=float) for column in zip(*deltas)))
    print(f"{len(cases)} items x {len(METHODS)} methods ({', '.join(METHODS)}) = {len(rows)} outputs; "
          f"{int(np.isnan(ovrl).sum())} not scored (no voice found)")
    print(f"rank correlation with PESQ: output OVRL {_spearman(ovrl, pesq):.2f}; change in OVRL against change in PESQ {delta_rho:.2f}")
    for method in METHODS:
        mine = [row for row in rows if row["method"] == method]
        print(f"  {method:9s} mean PESQ {np.nanmean([r['pesq'] for r in mine]):.2f}  mean OVRL {np.nanmean([r['ovrl'] for r in mine]):.2f}")
    tuning = [row for row in rows if row["half"] == "tune"]
    held = [row for row in rows if row["half"] == "held"]
    best = max(THRESHOLDS, key=lambda threshold: (_f1(tuning, float(threshold)), -threshold))
    print(f"threshold chosen on the tuning half ({len(tuning)} outputs): OVRL < {best:.2f}")
    for label, half in (("tuning half", tuning), ("held-out half", held)):
        flagged, hits, worst = _flagging(half, float(best))
        print(f"  {label}: {flagged} flagged, {hits} of them among the {worst} worst by PESQ (rank correlation {_spearman(np.array([r['ovrl'] for r in half], float), np.array([r['pesq'] for r in half], float)):.2f})")
    wall, cpu = _cost()
    print(f"cost on a 60 s 48 kHz stereo file, model loaded: {wall:.2f} s wall, {cpu:.2f} s CPU (load {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
