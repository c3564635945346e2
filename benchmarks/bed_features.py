"""Can the input's spectrum tell the music bed from unsteady noise inside voice frames? (issue 30, per bin)

For tuning-half mixtures of ``quality.py``'s group d (voice, bed, noise) and of
group a's chosen noises (voice and noise) the hybrid runs once with its mixing
rule's inputs captured (``hybrid_rules.capture``); the voice, the bed and the
noise are framed apart as destatic frames the input. In voice frames (the
voice weight over 0.5) each bin is labelled by its true powers: ``bed`` where
the bed outweighs the noise and the voice, ``noise`` where the noise outweighs
the voice and the bed together, ``speech`` where the voice outweighs the rest.
Each feature, computed from the input alone, is summarised per label (its
quantiles) and by how well it ranks ``bed`` over ``noise`` (the area under the
ROC curve), over every bin of voice frames and over the bins of interest to
the mixing rule: those the classic rule keeps (``Gc >= 0.5``) that DFN3
removes (``L <= Gc / 2``).

Features (powers averaged over ``hybrid_rules.SMOOTH_FRAMES`` frames first):
``over``, the power averaged over 25 frames over the profile (what the
persistence raise reads); ``peak``, the bin over the mean of its neighbours
2 to 4 bins away (``peak25`` of the 25-frame average; ``peak1`` the largest
within one bin); ``stable``, the smallest over +-``hybrid_rules.STABLE_SECONDS``
of ``peak1`` (``stable50`` over half that: a partial that holds its
frequency); ``flux``, minus the spread in dB of the bin's power over the same
span (clatter comes and goes). AUCs are given per bin and with each bin
weighted by its bed's (noise's) power, and a grid of threshold rules gives
the share of the bed's and the noise's energy each lets through.

For group d it also splits the bed's energy by frame kind and by the bin's
local bed-to-noise ratio (the bed over the noise or under it), with each
gain's missing share of it (``sum((1 - G) B) / sum(B)``): the oracle Wiener
mask, the classic rule alone and the rules of :data:`BOUND_GAINS`.

    python benchmarks/bed_features.py --items 4 --noises CopyMachine_2 VacuumCleaner_1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from concurrent.futures import ProcessPoolExecutor

import numpy as np

import bed_loss
import common
import hybrid_rules
import quality
import result_cache

LABELS = ("bed", "noise", "speech")


def features(inputs: hybrid_rules.Inputs) -> dict[str, np.ndarray]:
    """Every feature, ``(frames, bins)``, from the captured input's magnitudes and profile (row 0)."""
    from scipy.ndimage import maximum_filter1d

    power = inputs.magnitude[0].astype(np.float64) ** 2
    smooth = smooth_frames(power, hybrid_rules.SMOOTH_FRAMES)
    half = max(1, int(round(hybrid_rules.STABLE_SECONDS * inputs.frames_per_second)))
    peak = hybrid_rules.peakiness_db(smooth)
    return {
        "peak25": hybrid_rules.peakiness_db(smooth_frames(power, 25)),
        "peak1": maximum_filter1d(peak, 3, axis=1, mode="nearest"),
        "stable50": hybrid_rules.stable_peak_db(peak, max(1, half // 2)),
        "over": 10 * np.log10(smooth_frames(power, 25) / np.maximum(inputs.noise_power[0], 1e-30) + 1e-12),
        "peak": peak,
        "stable": hybrid_rules.stable_peak_db(peak, half),
        "flux": hybrid_rules.flux_db(smooth, half),
    }


def smooth_frames(power: np.ndarray, frames: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter1d

    return uniform_filter1d(power, frames, axis=0, mode="nearest")


def run_item(case: quality.Case, cache_dir) -> dict[str, object]:
    result_cache.install_dfn3_cache(cache_dir)
    noisy, reference, rate, bed = case.load()
    inputs, gains, profile = hybrid_rules.capture(noisy, rate, case)
    frames = gains.shape[1]
    start = int(case.lead_in_s * rate / profile.hop_length) + 1
    bed = np.zeros_like(reference) if bed is None else bed
    parts = {name: bed_loss.bed_spectra(signal, frames, profile)[start:]
             for name, signal in (("voice", reference - bed), ("bed", bed), ("noise", noisy - reference))}
    voice_frames = inputs.voice[0, start:] > 0.5
    labels = {
        "bed": (parts["bed"] > parts["noise"]) & (parts["bed"] > parts["voice"]),
        "noise": parts["noise"] > parts["voice"] + parts["bed"],
        "speech": parts["voice"] > parts["noise"] + parts["bed"],
    }
    classic, learned = inputs.classic[0, start:], inputs.learned[0, start:]
    contested = (classic >= 0.5) & (learned <= classic / 2)
    values = {name: value[start:][voice_frames] for name, value in features(inputs).items()}
    out = {"case": case.name, "group": case.group, "noise": case.noise}
    if case.group == "d":
        out["bound"] = bound_parts(inputs, parts, start, voice_frames)
    for label, mask in labels.items():
        for where, chosen in (("all", mask), ("contested", mask & contested)):
            chosen = chosen[voice_frames]
            weight = (parts["bed"] if label == "bed" else parts["noise"] if label == "noise" else parts["voice"])[voice_frames][chosen]
            out[(label, where)] = {name: value[chosen] for name, value in values.items()} | {"weight": weight}
    return out


BOUND_GAINS = ("classic", "ds_q10", "bi10", "bi10_nf")
"""The gains whose bed loss :func:`bound_parts` splits, beside the oracle Wiener mask."""


def bound_parts(inputs: hybrid_rules.Inputs, parts: dict[str, np.ndarray], start: int, voice_frames: np.ndarray) -> dict:
    """The bed's energy and each gain's missing share of it (``sum((1 - G) B) / sum(B)``) by frame kind (voice or not)
    and by the bin's local bed-to-noise ratio (the bed over the noise or under it)."""
    wiener = (parts["voice"] + parts["bed"]) / (parts["voice"] + parts["bed"] + parts["noise"] + 1e-30)
    gains = {"oracle wiener": wiener, **{name: (inputs.classic if name == "classic" else hybrid_rules.RULES[name](inputs))[0, start:]
                                          for name in BOUND_GAINS}}
    bed = parts["bed"]
    clears = bed > parts["noise"]
    total = bed.sum()
    result = {}
    for frames_name, frames in (("voice", voice_frames), ("other", ~voice_frames)):
        for bins_name, bins in (("bed over noise", clears), ("bed under noise", ~clears)):
            mask = frames[:, np.newaxis] & bins
            result[(frames_name, bins_name, "share")] = float(bed[mask].sum() / total)
            for name, gain in gains.items():
                result[(frames_name, bins_name, name)] = float(((1 - gain.astype(np.float64)) * bed)[mask].sum() / total)
    return result


def auc(positive: np.ndarray, negative: np.ndarray, positive_weight: np.ndarray | None = None,
        negative_weight: np.ndarray | None = None) -> float:
    """Chance that a random positive scores over a random negative (ties ignored), each drawn by its weight (default 1)."""
    if not positive.size or not negative.size:
        return float("nan")
    wp = np.ones(positive.size) if positive_weight is None else positive_weight
    wn = np.ones(negative.size) if negative_weight is None else negative_weight
    order = np.argsort(negative, kind="mergesort")
    below = np.concatenate([[0.0], np.cumsum(wn[order])])
    index = np.searchsorted(negative[order], positive, side="left")
    return float((wp * below[index]).sum() / (wp.sum() * wn.sum()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noises", nargs="+", default=["CopyMachine_2", "VacuumCleaner_1"])
    parser.add_argument("--items", type=int, default=4, help="tuning-half mixtures of group d and per group a noise")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=common.OUT_DIR / "cache")
    args = parser.parse_args(argv)
    common.require_media()
    began = time.perf_counter()
    quick = {case.name for case in quality.all_cases("ad", quick=True, halves=("tune",))}
    tuning = quality.all_cases("ad", quick=False, halves=("tune",))
    cases = sorted([c for c in tuning if c.group == "d"], key=lambda c: c.name not in quick)[: args.items]
    for noise in args.noises:
        cases += sorted([c for c in tuning if c.group == "a" and c.noise == noise], key=lambda c: c.name not in quick)[: args.items]
    print(f"{len(cases)} cases, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        items = list(pool.map(run_item, cases, [args.cache] * len(cases)))
    sets = {"group d": [i for i in items if i["group"] == "d"]}
    sets.update({f"group a, {noise}": [i for i in items if i["group"] == "a" and i["noise"] == noise] for noise in args.noises})
    names = [n for n in items[0][("bed", "all")] if n != "weight"]

    def pooled(chosen: list[dict], label: str, where: str, name: str) -> np.ndarray:
        return np.concatenate([i[(label, where)][name] for i in chosen]) if chosen else np.zeros(0)

    for where in ("all", "contested"):
        print(f"\n## Voice frames, {'every bin' if where == 'all' else 'bins the classic rule keeps and DFN3 removes'}\n")
        header = ["set", "label", "bins", *(f"{n} q10/q50/q90" for n in names)]
        body = []
        for title, chosen in sets.items():
            for label in LABELS:
                columns = [pooled(chosen, label, where, n) for n in names]
                body.append([title, label, columns[0].size,
                             *("/".join(f"{q:.1f}" for q in np.quantile(c, (0.1, 0.5, 0.9))) if c.size else "-" for c in columns)])
        print(quality.markdown_table(header, body))
        bed = {n: pooled(sets["group d"], "bed", where, n) for n in names}
        print("\nAUC, bed (group d) over noise:\n")
        header = ["noise from", *names]
        body = [[title, *(auc(bed[n], pooled(chosen, "noise", where, n)) for n in names)] for title, chosen in sets.items()]
        body.append(["bed over speech (group d)", *(auc(bed[n], pooled(sets["group d"], "speech", where, n)) for n in names)])
        print(quality.markdown_table(header, body))
        print("\nThe same, each bin weighted by its bed's (noise's) power:\n")
        bed_weight = pooled(sets["group d"], "bed", where, "weight")
        body = [[title, *(auc(bed[n], pooled(chosen, "noise", where, n), bed_weight, pooled(chosen, "noise", where, "weight"))
                          for n in names)] for title, chosen in sets.items()]
        print(quality.markdown_table(header, body))
    bounds = [i["bound"] for i in items if "bound" in i]
    print("\n## Group d: the bed's energy by frame kind and local bed-to-noise ratio, and each gain's missing share of it\n")
    keys = list(dict.fromkeys(key[:2] for key in bounds[0]))
    names = ["share", "oracle wiener", *BOUND_GAINS]
    body = [[f"{frames}, {bins}", *(np.mean([b[(frames, bins, name)] for b in bounds]) for name in names)] for frames, bins in keys]
    body.append(["bed level (1 - total missing), dB", "", *(20 * np.log10(max(1 - np.mean([sum(b[(*key, name)] for key in keys)
                                                                                          for b in bounds]), 1e-5)) for name in names[1:])])
    print(quality.markdown_table(["part", *names], body))
    names = [n for n in items[0][("bed", "all")] if n != "weight"]
    print("\n## Voice frames, every bin: a rule's pass (over >= O dB, peak1 >= P dB, flux >= F dB), the share of the bed's"
          " energy in bed bins that passes, and of the noise's in noise bins\n")
    header = ["over", "peak1", "flux", "bed (d)", *(f"noise ({title})" for title in sets)]
    body = []
    for over in (3.0, 6.0, 9.0):
        for peak in (None, 0.0, 3.0, 6.0):
            for flux in (None, -15.0, -10.0):
                def share(chosen: list[dict], label: str) -> float:
                    passed = pooled(chosen, label, "all", "over") >= over
                    if peak is not None:
                        passed &= pooled(chosen, label, "all", "peak1") >= peak
                    if flux is not None:
                        passed &= pooled(chosen, label, "all", "flux") >= flux
                    weight = pooled(chosen, label, "all", "weight")
                    return float(weight[passed].sum() / weight.sum())
                body.append([over, "-" if peak is None else peak, "-" if flux is None else flux, share(sets["group d"], "bed"),
                             *(share(chosen, "noise") for chosen in sets.values())])
    print(quality.markdown_table(header, body))
    print(f"\n{time.perf_counter() - began:.0f} s, load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
