"""Hum benchmark: mains hum under speech with no noise-only stretch, before and after hum detection in ``auto`` mode.

The LibriSpeech files of ``media/speech`` (16 kHz, speech from sample 0)
mixed with synthetic mains hum (:func:`common.drifting_hum`): a 50 Hz series
of 4 harmonics and a 60 Hz series of 6, the fundamental drifting 0.1 Hz
either side over 20 s, harmonics at ``1/k`` ("hum") or ``1/sqrt(k)``
("buzz"), at 0, 5 and 10 dB SNR. destatic runs with ``noise=None`` (auto):
"before" with ``hum="off"``, which is what ``auto`` did before hum detection
(the same profile and gains: logmmse output checked bit for bit against commit 2bac89d),
"after" with the default ``hum="auto"``. Scored on everything: SI-SDR and
wide-band PESQ, as ``quality.py`` scores.

Run ``python benchmarks/hum.py --help`` for the options; results go to
``benchmarks/out/``.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import common

SNRS_DB = (0.0, 5.0, 10.0)
SERIES = ((50.0, 4), (60.0, 6))
"""(fundamental Hz, harmonics) of the hum mixed in."""
DECAYS = {"hum": 1.0, "buzz": 0.5}
"""Harmonic amplitudes ``k ** -decay``."""


def cases() -> list[tuple[str, float, int, str, float]]:
    """(speech file, fundamental, harmonics, shape, SNR) of every item."""
    speeches = sorted((common.MEDIA_DIR / "speech").glob("*.flac"))
    return [
        (path.name, fundamental, harmonics, shape, snr)
        for path in speeches
        for fundamental, harmonics in SERIES
        for shape in DECAYS
        for snr in SNRS_DB
    ]


def run_case(case: tuple[str, float, int, str, float], methods: tuple[str, ...]) -> list[dict[str, object]]:
    """Score one mixture with every method, before and after."""
    import destatic

    name, fundamental, harmonics, shape, snr = case
    clean, rate = common.load_mono(common.MEDIA_DIR / "speech" / name)
    rng = np.random.default_rng(common.stable_seed(*case))
    noise = common.drifting_hum(
        len(clean), rate, fundamental_hz=fundamental, harmonics=harmonics, rng=rng, decay=DECAYS[shape]
    )
    noisy, clean = common.mix_at_snr(clean, noise, snr)
    tones = destatic.dsp.resolve_profile(noisy, rate).tones.size
    rows = []
    for method in methods:
        row: dict[str, object] = {
            "speech": name.split(".")[0], "hum": f"{fundamental:g}Hz x{harmonics} {shape}", "snr_db": snr,
            "method": method, "tones_found": tones,
        }
        for label, hum in (("before", "off"), ("after", "auto")):
            output = destatic.denoise(noisy, rate, method=None if method == "default" else method, hum=hum)
            scores = common.score(clean, output, rate)
            row[f"si_sdr_{label}"] = scores["si_sdr"]
            row[f"pesq_{label}"] = scores["pesq"]
        rows.append(row)
    return rows


def table(rows: list[dict[str, object]], methods: tuple[str, ...]) -> str:
    """Means per hum case and SNR: SI-SDR and PESQ before -> after, per method."""
    header = ["hum", "SNR dB", "found"] + [f"{m} {metric}" for m in methods for metric in ("SI-SDR", "PESQ")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = list(dict.fromkeys((r["hum"], r["snr_db"]) for r in rows)) + [("all", None)]
    for hum, snr in groups:
        mine = [r for r in rows if hum == "all" or (r["hum"] == hum and r["snr_db"] == snr)]
        first = [r for r in mine if r["method"] == methods[0]]
        cells = [str(hum), "" if snr is None else f"{snr:g}", f"{sum(r['tones_found'] > 0 for r in first)}/{len(first)}"]
        for method in methods:
            of = [r for r in mine if r["method"] == method]
            for metric, digits in (("si_sdr", 1), ("pesq", 2)):
                before = np.mean([r[f"{metric}_before"] for r in of])
                after = np.mean([r[f"{metric}_after"] for r in of])
                cells.append(f"{before:.{digits}f} -> {after:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["logmmse", "default"], help="destatic methods (default: logmmse default)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default 2)")
    parser.add_argument("--out", type=Path, default=common.OUT_DIR, help="output folder (default benchmarks/out)")
    args = parser.parse_args(argv)
    common.require_media()
    items, methods = cases(), tuple(args.methods)
    began = time.perf_counter()
    rows: list[dict[str, object]] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for done, result in enumerate(pool.map(run_case, items, [methods] * len(items)), start=1):
            rows += result
            print(f"\r{done}/{len(items)} items, {time.perf_counter() - began:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "hum_scores.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = table(rows, methods)
    (args.out / "hum.md").write_text(f"# Hum in auto mode: before -> after (means over {len(items) // 6} speech files)\n\n{report}\n")
    print(f"\n{report}\n\n{len(rows)} rows in {time.perf_counter() - began:.0f} s; hum_scores.csv and hum.md in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
