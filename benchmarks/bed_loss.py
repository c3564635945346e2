"""Where the hybrid loses the music bed of ``quality.py``'s group d: by frames (voice or not) and by bins.

For each group d mixture the hybrid runs once with its mixing rule's inputs
captured (``hybrid_rules.capture``). The bed alone is framed as destatic
frames the input, and each gain ``G`` is summarised by its bed-weighted mean
``sum(G |B|^2) / sum(|B|^2)`` (dB): the bed's coefficient the output would
show if the gain were the only change, which is close to ``quality.py``'s
projected bed level. The missing part ``sum((1 - G) |B|^2) / sum(|B|^2)`` is
additive over frames and bins, so the table splits it between voice frames
(today's voice weight over 0.5) and the rest, and between bins the classic
rule finds noisy (``Gc < 1``, where the hybrid may move towards DFN3) or not.

    python benchmarks/bed_loss.py --half tune --rules default mts_e07
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import common
import hybrid_rules
import quality
import result_cache

VOICE_FRAME = 0.5
"""Today's voice weight above this: a voice frame."""
NOISY_CLASSIC = 0.9
"""A bin whose classic gain is below this: one the classic rule finds noisy."""


def bed_spectra(bed: np.ndarray, frames: int, profile: object) -> np.ndarray:
    """The bed's power in destatic's frames of the input, ``(frames, bins)``."""
    from destatic.dsp.stft import FrameSplitter

    splitter = FrameSplitter(1, n_fft=profile.n_fft, hop_length=profile.hop_length, centered=profile.centered)
    samples = np.asarray(bed, np.float32).reshape(-1, 1)
    spectra = np.concatenate([splitter.push(samples), splitter.finish()], axis=1)[0, :frames]
    return np.abs(spectra).astype(np.float64) ** 2


def split_loss(gain: np.ndarray, weight: np.ndarray, voice_frames: np.ndarray, noisy_bins: np.ndarray) -> dict[str, float]:
    """The bed-weighted mean gain (dB) and the missing share of the bed's amplitude in each part."""
    total = weight.sum()
    missing = (1 - gain) * weight / total
    parts = {"level_db": 20 * np.log10(max((gain * weight).sum() / total, 1e-5))}
    for frames_name, frames in (("voice", voice_frames), ("other", ~voice_frames)):
        for bins_name, bins in (("noisy", noisy_bins), ("kept", ~noisy_bins)):
            parts[f"{frames_name}/{bins_name}"] = float(missing[frames[:, np.newaxis] & bins].sum())
    return parts


def run_item(case: quality.Case, rules: tuple[str, ...], cache_dir: Path) -> list[dict[str, object]]:
    result_cache.install_dfn3_cache(cache_dir)
    noisy, reference, rate, bed = case.load()
    inputs, gains, profile = hybrid_rules.capture(noisy, rate, case)
    start = int(case.lead_in_s * rate / profile.hop_length) + 1
    weight = bed_spectra(bed, gains.shape[1], profile)[start:]
    voice_frames = inputs.voice[0, start:] > VOICE_FRAME
    noisy_bins = inputs.classic[0, start:] < NOISY_CLASSIC
    rows = []
    candidates = {"classic": inputs.classic, "learned": inputs.learned}
    candidates.update({name: hybrid_rules.RULES[name](inputs) for name in rules})
    for name, gain in candidates.items():
        output = hybrid_rules.apply(noisy, rate, gain, profile)
        begin = int(case.lead_in_s * rate)
        projected = quality.bed_level_db(output[begin:], (reference - bed)[begin:], bed[begin:], (noisy - reference)[begin:])
        rows.append({"case": case.name, "bed": case.bed, "gain": name, "projected_db": projected,
                     "voice_share": float(weight[voice_frames].sum() / weight.sum()),
                     **split_loss(gain[0, start:].astype(np.float64), weight, voice_frames, noisy_bins)})
    return rows


def add_bed_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the scripts that go through group d: ``--half``, ``--quick``, ``--jobs``."""
    parser.add_argument("--half", choices=(*quality.HALVES, "both"), default="tune")
    parser.add_argument("--quick", action="store_true", help="quality.py's --quick subset")
    parser.add_argument("--jobs", type=int, default=2)


def run_bed_items(args: argparse.Namespace, item: Callable[..., list[dict[str, object]]], *shared: object) -> tuple[list[dict[str, object]], int]:
    """Every group d mixture of the chosen half through ``item(case, *shared)`` in worker processes: the rows and the count."""
    common.require_media()
    halves = quality.HALVES if args.half == "both" else (args.half,)
    cases = quality.all_cases("d", quick=args.quick, halves=halves)
    print(f"{len(cases)} cases, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for result in pool.map(item, cases, *([value] * len(cases) for value in shared)):
            rows += result
    return rows, len(cases)


def by_bed_table(rows: list[dict[str, object]], key: str, cell: Callable[[list[dict[str, object]]], object]) -> str:
    """A row per bed, a column per candidate (``row[key]``), each cell ``cell`` of that bed's and candidate's rows."""
    names = list(dict.fromkeys(row[key] for row in rows))
    body = [[bed, *(cell([r for r in rows if r["bed"] == bed and r[key] == name]) for name in names)]
            for bed in dict.fromkeys(row["bed"] for row in rows)]
    return quality.markdown_table(["bed", *names], body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", nargs="+", default=["default"], choices=list(hybrid_rules.RULES))
    add_bed_arguments(parser)
    parser.add_argument("--cache", type=Path, default=common.OUT_DIR / "cache")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    rows, count = run_bed_items(args, run_item, tuple(args.rules), args.cache)
    parts = ["voice/noisy", "voice/kept", "other/noisy", "other/kept"]
    header = ["gain", "projected bed dB", "bed-weighted gain dB", *(f"missing {part}" for part in parts)]
    body = []
    for name in dict.fromkeys(row["gain"] for row in rows):
        mine = [row for row in rows if row["gain"] == name]
        body.append([name, np.mean([r["projected_db"] for r in mine]), np.mean([r["level_db"] for r in mine]),
                     *(np.mean([r[part] for r in mine]) for part in parts)])
    share = np.mean([row["voice_share"] for row in rows if row["gain"] == "classic"])
    print(f"Group d, {args.half} half, {count} mixtures; bed energy in voice frames: {100 * share:.0f} %\n")
    print(quality.markdown_table(header, body))
    print("\nProjected bed level by bed:\n")
    print(by_bed_table(rows, "gain", lambda mine: np.mean([r["projected_db"] for r in mine])))
    print(f"\n{time.perf_counter() - began:.0f} s, load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
