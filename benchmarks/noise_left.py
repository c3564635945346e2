"""Where the hybrid leaves noise that DeepFilterNet3 removes (issue 30's copy machine and vacuum cleaner floors).

For group a mixtures of chosen noises (tuning half) the hybrid runs once with
its mixing rule's inputs captured (``hybrid_rules.capture``); the clean speech
and the noise alone are framed as destatic frames the input. For each gain
``G`` (the hybrid's, DFN3's in destatic's frame, the classic rule's) the
noise left, ``sum(G^2 |N|^2)``, and the speech removed, ``sum((1 - G)^2 |S|^2)``,
are split between frame kinds: voice frames (the voice weight over 0.5),
frames of the voice region that the weight calls "not voice" (pauses and
onsets inside speech: the region over 0.5) and the rest; and, in voice
frames, between bins the classic rule keeps (``Gc >= 0.5``, where it sees
speech) and the others. Shares are of the noise's (speech's) energy in the
scored region, so each row's parts add up to its total.

    python benchmarks/noise_left.py --noises CopyMachine_2 VacuumCleaner_1 --items 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

import bed_loss
import common
import hybrid_rules
import quality
import result_cache

VOICE_FRAME = 0.5
KEPT_CLASSIC = 0.5
"""A bin whose classic gain is at least this: one the classic rule takes for speech."""


def frame_kinds(inputs: hybrid_rules.Inputs, start: int) -> dict[str, np.ndarray]:
    """Boolean masks ``(frames, bins)`` of the scored frames: voice frames by the classic rule's bins, region, the rest."""
    voice = inputs.voice[0, start:] > VOICE_FRAME
    region = (hybrid_rules.energy_region(inputs)[0, start:] > VOICE_FRAME) & ~voice
    kept = inputs.classic[0, start:] >= KEPT_CLASSIC
    column = np.ones_like(kept)
    return {
        "voice, classic keeps": voice[:, np.newaxis] & kept,
        "voice, classic removes": voice[:, np.newaxis] & ~kept,
        "region, not voice": region[:, np.newaxis] & column,
        "elsewhere": ~(voice | region)[:, np.newaxis] & column,
    }


def run_item(case: quality.Case, cache_dir) -> list[dict[str, object]]:
    result_cache.install_dfn3_cache(cache_dir)
    noisy, clean, rate, _ = case.load()
    inputs, gains, profile = hybrid_rules.capture(noisy, rate, case)
    start = int(case.lead_in_s * rate / profile.hop_length) + 1
    speech = bed_loss.bed_spectra(clean, gains.shape[1], profile)[start:]
    noise = bed_loss.bed_spectra(noisy - clean, gains.shape[1], profile)[start:]
    kinds = frame_kinds(inputs, start)
    rows = []
    for name, gain in (("hybrid", gains), ("dfn3", inputs.learned), ("classic", inputs.classic)):
        g = gain[0, start:].astype(np.float64)
        row = {"case": case.name, "noise": case.noise, "gain": name,
               "noise left": float((g**2 * noise).sum() / noise.sum()),
               "speech removed": float(((1 - g) ** 2 * speech).sum() / speech.sum())}
        for kind, mask in kinds.items():
            row[f"noise left: {kind}"] = float((g**2 * noise)[mask].sum() / noise.sum())
            row[f"speech removed: {kind}"] = float(((1 - g) ** 2 * speech)[mask].sum() / speech.sum())
        voice = kinds["voice, classic keeps"] | kinds["voice, classic removes"]
        row["frames: voice, region, elsewhere"] = [float(m.any(axis=1).mean()) for m in
                                                   (voice, kinds["region, not voice"], kinds["elsewhere"])]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noises", nargs="+", default=["CopyMachine_2", "VacuumCleaner_1"])
    parser.add_argument("--items", type=int, default=3, help="tuning-half mixtures per noise (the --quick ones first)")
    parser.add_argument("--cache", type=Path, default=common.OUT_DIR / "cache")
    args = parser.parse_args(argv)
    common.require_media()
    began = time.perf_counter()
    quick = {case.name for case in quality.all_cases("a", quick=True, halves=("tune",))}
    cases = []
    for noise in args.noises:
        mine = [c for c in quality.all_cases("a", quick=False, halves=("tune",)) if c.noise == noise]
        cases += sorted(mine, key=lambda c: c.name not in quick)[: args.items]
    rows = [row for case in cases for row in run_item(case, args.cache)]
    kinds = [k[len("noise left: "):] for k in rows[0] if k.startswith("noise left: ")]
    for metric in ("noise left", "speech removed"):
        header = ["noise", "gain", "total", *kinds]
        body = []
        for noise in args.noises:
            for gain in ("hybrid", "dfn3", "classic"):
                mine = [r for r in rows if r["noise"] == noise and r["gain"] == gain]
                body.append([noise, gain, 10 * np.log10(np.mean([r[metric] for r in mine])),
                             *(10 * np.log10(max(np.mean([r[f"{metric}: {k}"] for r in mine]), 1e-12)) for k in kinds)])
        print(f"{metric} (dB of the {'noise' if metric == 'noise left' else 'speech'}'s energy), {args.items} tuning items per noise:\n")
        print(quality.markdown_table(header, body) + "\n")
    shares = np.mean([r["frames: voice, region, elsewhere"] for r in rows if r["gain"] == "hybrid"], axis=0)
    print("scored frames: voice {:.0f} %, region but not voice {:.0f} %, elsewhere {:.0f} %".format(*(100 * shares)))
    print(f"\n{time.perf_counter() - began:.0f} s, load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
