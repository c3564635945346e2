"""Does destatic's speech-quality score (DNSMOS P.835 OVRL on voice frames) tell which outputs are worse?

The speech items of ``quality.py`` (group a: speech under real and
synthetic noises after a 1 s lead-in; group b: the NOIZEUS and VoiceBank
noisy/clean pairs, speech from the start: 280 items, or the 78 of its
``--quick`` with ``--quick``), with its tuning and held-out halves (split
alternately within each group and noise, so both halves hold the same noise
types), are cleaned by several methods, and the noisy input itself is kept
as one more "method". Each output is scored as the pipeline scores it
(:func:`destatic.steps.quality.score_voice`, on WAVs, with the report's frame
energies) and by PESQ against the clean speech. Printed:

- the rank correlation (Spearman) of the output's OVRL with PESQ, over every
  item and method, and that of the change from input to output with the
  change in PESQ;
- the flag threshold chosen on the tuning half (best F0.5 at finding the
  worst quarter by PESQ: precision weighs more than recall, since every
  flag costs a person a listen), and reported on the other half beside it: how many are flagged, and how
  many of those are in that half's worst quarter by PESQ;
- each half's rank correlation, PESQ quartiles and flags, and the same per
  group, so that a half that disagrees can be told from one that holds a
  narrower range;
- what the score costs: its wall and CPU time on a 60 s file.

Run ``python benchmarks/speech_quality.py [--quick] [--rows rows.json]``;
``--rows`` keeps every output's scores in that file as they come (a stopped
run's rows are a seeded sample of the set) and, when it exists, reads them
back instead of cleaning again (``--rescore`` to redo).
"""

from __future__ import annotations

import argparse
import json
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

    noisy, clean, rate, _ = case.load()
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
                "case": case.name, "group": case.group, "half": case.half, "method": method, "pesq": pesq,
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


def _f_half(rows: list[dict[str, object]], threshold: float) -> float:
    """F0.5 of the flags at `threshold` at finding the worst quarter by PESQ (precision weighted over recall)."""
    flagged, hits, worst = _flagging(rows, threshold)
    return 0.0 if hits == 0 else 1.25 * hits / (flagged + 0.25 * worst)


def _describe_half(label: str, half: list[dict[str, object]], threshold: float) -> str:
    """One line about a part of the rows: size, PESQ quartiles, rank correlation, and the flags at `threshold`."""
    pesq = np.array([row["pesq"] for row in half], dtype=float)
    ovrl = np.array([row["ovrl"] for row in half], dtype=float)
    flagged, hits, worst = _flagging(half, threshold)
    items = len({row["case"] for row in half})
    return (f"  {label}: {items} items, {len(half)} outputs, PESQ quartiles {np.nanquantile(pesq, 0.25):.2f}/"
            f"{np.nanmedian(pesq):.2f}/{np.nanquantile(pesq, 0.75):.2f}; rank correlation {_spearman(ovrl, pesq):.2f}; "
            f"{flagged} flagged, {hits} of them among the {worst} worst by PESQ")


def _cost(minutes: float) -> tuple[float, float, float]:
    """CPU seconds of the score and of a run's core on `minutes` of 48 kHz stereo speech in noise, in AAC.

    The speech is the shared LibriSpeech and NOIZEUS sentences one after the
    other with 1 s gaps, looped, under the air-conditioner noise at 5 dB SNR.
    The score is timed as the report step runs it, the models already loaded
    (a warm child). The run's core is what any run of such a file does:
    decode (ffmpeg), ``denoise()`` (the default method), encode to AAC
    (ffmpeg), ffmpeg's CPU included; a whole run also writes the report and
    talks to Prefect, so the score's share of it is at most their ratio.

    Returns
    -------
    tuple
        The score's CPU seconds, its wall seconds, and the run core's CPU seconds.
    """
    import resource

    import destatic
    from destatic.dsp.quality import speech_quality
    from destatic.dsp.voice import voice_probabilities
    from destatic.media.audio import export_audio, extract_audio
    from destatic.steps.quality import score_voice
    from destatic.steps.report import LEVEL_FRAME_S, _paired_energies, _quiet

    def cpu_with_children() -> float:
        return time.process_time() + sum(getattr(resource.getrusage(resource.RUSAGE_CHILDREN), field) for field in ("ru_utime", "ru_stime"))

    rate = 48000
    sentences = [common.load_mono(path, sample_rate=rate)[0] for path in sorted((common.MEDIA_DIR / "speech").iterdir())]
    talk = np.concatenate([piece for sentence in sentences for piece in (sentence, np.zeros(rate))])
    frames = int(minutes * 60 * rate)
    noise = common.noise_excerpt(common.load_mono(common.MEDIA_DIR / "noise" / "AirConditioner_6.wav", sample_rate=rate)[0],
                                 frames, rng=np.random.default_rng(1))
    noisy = common.mix_at_snr(np.resize(talk, frames), noise, 5.0)[0].astype(np.float32)
    speech_quality(np.zeros(16000, np.float32))
    voice_probabilities(np.zeros(16000, np.float32))  # both models loaded, as in the report's child on a second file
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        sf.write(folder / "mix.wav", np.stack([noisy, noisy], axis=1), rate, subtype="FLOAT")
        export_audio(folder / "mix.wav", folder / "input.m4a")
        started = cpu_with_children()
        extract_audio(folder / "input.m4a", folder / "before.wav")
        audio, _ = sf.read(folder / "before.wav", dtype="float32")
        sf.write(folder / "after.wav", np.asarray(destatic.denoise(audio, rate), np.float32), rate, subtype="FLOAT")
        export_audio(folder / "after.wav", folder / "output.m4a")
        run_cpu = cpu_with_children() - started
        before, _ = _paired_energies(folder / "before.wav", folder / "after.wav")
        wall, cpu = time.perf_counter(), time.process_time()
        record = score_voice(folder / "before.wav", folder / "after.wav", before, _quiet(before), LEVEL_FRAME_S)
        score_wall, score_cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert "output" in record, record
    return score_cpu, score_wall, run_cpu


def _noise(row: dict[str, object]) -> str:
    """The noise of a row's item, from its name (``speech+noise@snr``)."""
    return str(row["case"]).split("+", 1)[-1].split("@", 1)[0]


def _validation(rows: list[dict[str, object]]) -> None:
    """Print the rank correlations, the threshold chosen on the tuning half, and each half's and group's figures."""
    pesq = np.array([row["pesq"] for row in rows], dtype=float)
    ovrl = np.array([row["ovrl"] for row in rows], dtype=float)
    by_case: dict[str, dict[str, dict[str, object]]] = {}
    for row in rows:
        by_case.setdefault(str(row["case"]), {})[str(row["method"])] = row
    deltas = [(row["ovrl"] - row["input_ovrl"], row["pesq"] - methods["noisy"]["pesq"])
              for methods in by_case.values() for name, row in methods.items() if name != "noisy"]
    delta_rho = _spearman(*(np.array(column, dtype=float) for column in zip(*deltas)))
    print(f"{len(by_case)} items x {len(METHODS)} methods ({', '.join(METHODS)}) = {len(rows)} outputs; "
          f"{int(np.isnan(ovrl).sum())} not scored (no voice found)")
    print(f"rank correlation with PESQ: output OVRL {_spearman(ovrl, pesq):.2f}; change in OVRL against change in PESQ {delta_rho:.2f}")
    for method in METHODS:
        mine = [row for row in rows if row["method"] == method]
        print(f"  {method:9s} mean PESQ {np.nanmean([r['pesq'] for r in mine]):.2f}  mean OVRL {np.nanmean([r['ovrl'] for r in mine]):.2f}")
    tuning = [row for row in rows if row["half"] == "tune"]
    held = [row for row in rows if row["half"] == "held"]
    best = float(max(THRESHOLDS, key=lambda threshold: (_f_half(tuning, float(threshold)), -threshold)))
    print(f"threshold chosen on the tuning half (best F0.5 at finding its worst quarter by PESQ): OVRL < {best:.2f}")
    for label, part in (("tuning half", tuning), ("held-out half", held), ("all", rows)):
        print(_describe_half(label, part, best))
    within = [_spearman(np.array([r["ovrl"] for r in methods.values()], float), np.array([r["pesq"] for r in methods.values()], float))
              for methods in by_case.values() if all(np.isfinite(r["ovrl"]) for r in methods.values())]
    print(f"within an item (the {len(METHODS)} outputs of one input ranked): mean rank correlation {np.nanmean(within):.2f} over {len(within)} items")
    print("by noise (items: rank correlation over their outputs; mean PESQ of the input):")
    for noise in sorted({_noise(row) for row in rows}):
        part = [row for row in rows if _noise(row) == noise]
        print(f"  {noise:18s} {len(part) // len(METHODS):3d}: {_spearman(np.array([r['ovrl'] for r in part], float), np.array([r['pesq'] for r in part], float)):5.2f}; "
              f"{np.mean([r['pesq'] for r in part if r['method'] == 'noisy']):.2f}")
    for group, name in (("a", "group a (mixed, lead-in)"), ("b", "group b (recorded pairs)")):
        for label, half in (("tuning", tuning), ("held-out", held)):
            part = [row for row in half if row.get("group") == group]
            if part:
                print(_describe_half(f"{name}, {label}", part, best))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 78 items of quality.py --quick instead of all 280")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--rows", type=Path, help="JSON file of every output's scores: written as they come, or read back if it exists")
    parser.add_argument("--rescore", action="store_true", help="clean and score again even if --rows exists")
    parser.add_argument("--cost-minutes", type=float, default=10.0, help="length of the cost measure (0: skip it)")
    parser.add_argument("--cost-only", action="store_true", help="the cost measure alone")
    args = parser.parse_args(argv)
    common.require_media()
    if args.cost_only:
        rows = []
    elif args.rows and args.rows.exists() and not args.rescore:
        rows = json.loads(args.rows.read_text())
    else:
        cases = sorted(all_cases("ab", quick=args.quick), key=lambda case: common.stable_seed("speech-quality", case.name))
        rows = []
        with ProcessPoolExecutor(args.jobs) as pool:
            for done, item in enumerate(pool.map(_score_item, cases), 1):
                rows.extend(item)
                if args.rows:
                    args.rows.write_text(json.dumps(rows, indent=0, default=float))
                print(f"{done}/{len(cases)} items", file=sys.stderr, flush=True)
    if rows:
        _validation(rows)
    if args.cost_minutes:
        score_cpu, score_wall, run_cpu = _cost(args.cost_minutes)
        print(f"cost on {args.cost_minutes:g} min of 48 kHz stereo speech in noise, models loaded: the score {score_cpu:.2f} s CPU "
              f"({score_wall:.2f} s wall); decode + denoise() + AAC encode {run_cpu:.1f} s CPU: {100 * score_cpu / run_cpu:.1f} % of it "
              f"(load {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
