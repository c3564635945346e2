"""Issue 30's bound on group d: what oracle real-valued masks do to the music bed, and what keeping it at -3 dB costs.

For each group d mixture of ``quality.py`` the voice, the bed and the noise are
framed apart in the hybrid's STFT (its profile's framing), masks are made
from their true powers, and destatic's inverse step applies them to the noisy
input (with a profile without tones: no hum canceller, the masks alone). Masks
(``S`` = voice + bed, the reference; powers per bin and frame):

- ``wiener``: ``P_S / (P_S + P_N)``, the per-bin mask closest to ``S`` in the
  mean-square sense: the best cleaning any real gain gives.
- ``voice_wiener``: ``P_V / (P_V + P_B + P_N)``: a perfect voice enhancer (what
  DFN3 aims at), for the bed's loss when only the voice is wanted.
- ``wiener_floor``: ``max(wiener, f)``, ``f`` per item such that the bed keeps
  -3 dB (its bed-weighted mean gain ``sum(G P_B) / sum(P_B)`` at ``10^(-3/20)``).
- ``bed_optimal``: the mask closest to ``S`` among those that keep the bed at
  -3 dB by that measure: ``clip((P_S + mu P_B) / (P_S + P_N), 0, 1)`` with
  ``mu`` per item (the Lagrange multiplier of the constraint).
- ``classic``: destatic's log-MMSE gain with the hybrid's own profile (hum
  cancelled on hum items, as destatic does), for comparison; ``noisy`` is the input.
- ``classic KEY=VALUE``: the same with one of its options changed
  (:data:`CLASSIC_VARIANTS`): what each knob of the classic rule trades.

Scored as ``quality.py`` scores group d (SI-SDR against voice plus bed, the
bed's projected level) plus the noise's projected level in the output and
PESQ and STOI of the output against voice plus bed (a music bed is not what
PESQ was made for: read them as a ranking of the masks only).

    python benchmarks/bed_oracle.py --half tune
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import bed_loss
import common
import hybrid_rules
import quality

BED_TARGET_DB = -3.0
"""Issue 30's floor for the bed's level in the output."""
CLASSIC_VARIANTS = (
    {"speech_absence": 0.0}, {"speech_absence": 0.1}, {"smoothing": 0.90}, {"smoothing": 0.98},
    {"max_reduction_db": 20.0}, {"sensitivity_db": -3.0}, {"track_noise": False}, {"profiled_ceiling_db": 0.0}, {"profiled_ceiling_db": 1.0},
)
"""Options of the classic rule tried one at a time (its defaults: speech absence 0.2, smoothing 0.94, 30 dB, 0 dB)."""


def framed_power(signal: np.ndarray, profile: object) -> np.ndarray:
    """``|STFT|^2`` of a mono signal in the profile's framing, ``(1, frames, bins)``."""
    from destatic.dsp.stft import FrameSplitter

    splitter = FrameSplitter(1, n_fft=profile.n_fft, hop_length=profile.hop_length, centered=profile.centered)
    samples = np.asarray(signal, np.float32).reshape(-1, 1)
    spectra = np.concatenate([splitter.push(samples), splitter.finish()], axis=1)
    return np.abs(spectra).astype(np.float64) ** 2


def bed_share(gain: np.ndarray, bed_power: np.ndarray) -> float:
    """The bed-weighted mean gain: about the bed's coefficient in the output."""
    return float((gain * bed_power).sum() / bed_power.sum())


def solve_for_bed(make_mask, bed_power: np.ndarray, start: int, low: float, high: float, steps: int = 30) -> tuple[np.ndarray, float]:
    """Bisect the mask's parameter for the least one that keeps the bed at :data:`BED_TARGET_DB` (bed-weighted, frames from ``start``)."""
    target = 10 ** (BED_TARGET_DB / 20)

    def keeps(parameter: float) -> bool:
        return bed_share(make_mask(parameter)[:, start:], bed_power[:, start:]) >= target

    if keeps(low):
        return make_mask(low), low
    for _ in range(steps):
        middle = 0.5 * (low + high)
        if keeps(middle):
            high = middle
        else:
            low = middle
    return make_mask(high), high


def run_item(case: quality.Case) -> list[dict[str, object]]:
    from destatic.dsp.denoising import resolve_profile
    from destatic.dsp.framing import checked_profile
    from destatic.dsp.subtract import compute_gains

    noisy, reference, rate, bed = case.load()
    samples = np.asarray(noisy, np.float32).reshape(-1, 1)
    def profile_for(hum: str) -> object:
        return checked_profile(resolve_profile(samples, rate, quality.noise_argument(case), method="hybrid", hum=hum), rate, 1)

    destatic_profile, profile = profile_for("auto"), profile_for("off")
    classic = np.concatenate(list(compute_gains([samples], rate, destatic_profile, method="logmmse")), axis=1)
    frames = classic.shape[1]
    wanted, bed_power = framed_power(reference, profile)[:, :frames], framed_power(bed, profile)[:, :frames]
    voice_power, noise_power = framed_power(reference - bed, profile)[:, :frames], framed_power(noisy - reference, profile)[:, :frames]
    start = int(case.lead_in_s * rate / profile.hop_length) + 1
    total = wanted + noise_power + 1e-20
    wiener = wanted / total
    variants = {
        "classic " + ",".join(f"{key}={value:g}" for key, value in options.items()):
            (np.concatenate(list(compute_gains([samples], rate, destatic_profile, method="logmmse", **options)), axis=1).astype(np.float64),
             float("nan"))
        for options in CLASSIC_VARIANTS
    }
    masks = {
        "noisy": (None, float("nan")),
        "classic": (classic.astype(np.float64), float("nan")),
        **variants,
        "wiener": (wiener, float("nan")),
        "voice_wiener": (voice_power / (voice_power + bed_power + noise_power + 1e-20), float("nan")),
        "wiener_floor": solve_for_bed(lambda f: np.maximum(wiener, f), bed_power, start, 0.0, 1.0),
        "bed_optimal": solve_for_bed(lambda mu: np.minimum((wanted + mu * bed_power) / total, 1.0), bed_power, start, 0.0, 1e4),
    }
    begin = int(case.lead_in_s * rate)
    voice, noise = (reference - bed)[begin:], (noisy - reference)[begin:]
    rows = []
    for name, (mask, parameter) in masks.items():
        if mask is None:
            output, mask = np.asarray(noisy[begin:], np.float64), np.ones_like(wiener)
        else:
            used = destatic_profile if name.startswith("classic") else profile
            output = hybrid_rules.apply(noisy, rate, mask.astype(np.float32), used)[begin:].astype(np.float64)
        basis = np.stack([voice, bed[begin:], noise], axis=1)
        (_, bed_coefficient, noise_coefficient), *_ = np.linalg.lstsq(basis, output, rcond=None)
        scores = common.score(reference[begin:], output, rate)
        rows.append({
            "case": case.name, "bed": case.bed, "noise": case.noise, "mask": name, "parameter": parameter,
            "si_sdr": scores["si_sdr"], "pesq": scores["pesq"], "stoi": scores["stoi"],
            "bed_db": 20 * np.log10(max(abs(bed_coefficient), 1e-5)),
            "noise_db": 20 * np.log10(max(abs(noise_coefficient), 1e-5)),
            "bed_weighted_db": 20 * np.log10(max(bed_share(mask[:, start:], bed_power[:, start:]), 1e-5)),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bed_loss.add_bed_arguments(parser)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    rows, count = bed_loss.run_bed_items(args, run_item)
    metrics = ("si_sdr", "bed_db", "bed_weighted_db", "noise_db", "pesq", "stoi", "parameter")
    body = []
    for name in dict.fromkeys(row["mask"] for row in rows):
        mine = [row for row in rows if row["mask"] == name]
        body.append([name, *(float(np.nanmean([r[m] for r in mine])) if any(np.isfinite(r[m]) for r in mine) else "" for m in metrics)])
    print(f"Group d, {args.half} half, {count} mixtures (means)\n")
    print(quality.markdown_table(["mask", "SI-SDR dB", "bed dB", "bed-weighted gain dB", "noise dB", "PESQ", "STOI", "parameter"], body))
    print("\nSI-SDR / bed dB by bed:\n")
    print(bed_loss.by_bed_table(
        rows, "mask", lambda mine: f"{np.mean([r['si_sdr'] for r in mine]):.2f} / {np.mean([r['bed_db'] for r in mine]):.2f}"
    ))
    print(f"\n{time.perf_counter() - began:.0f} s, load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
