"""Quality benchmark: destatic against DeepFilterNet3, noisereduce, ffmpeg afftdn and SoX noisered.

Every shared speaker (the LibriSpeech, NOIZEUS and VoiceBank clean speech of
``media/speech`` and ``media/pairs/voicebank/clean``) and four groups:

- ``a``: speech + steady noise (the three recorded steady noises of
  ``media/noise``; synthetic white, pink and brown noise, a fan's blade tones
  over broadband, 50 Hz hum) at 0/5/10 dB SNR after a 1 s noise-only lead-in;
  every tool learns the noise from the lead-in.
- ``b``: the NOIZEUS and VoiceBank noisy/clean pairs, speech from the start,
  no lead-in (destatic's ``auto``).
- ``c``: content that must be kept, the music and ambience of the shared
  videos at 44.1 kHz under the same noises at 5 and 15 dB after a 1 s lead-in,
  scored by SI-SDR only (the videos' own audio is the reference).
- ``d``: a voice over a music bed 12 dB under it, plus noise 5 dB under the
  voice, after a 1 s noise-only lead-in; scored by SI-SDR against voice plus
  bed, and by the bed's level in the output (dB, least-squares projection of
  the output on the voice and the bed). Beds: the two pieces of
  ``media/music`` and the music of ``chaplin.mp4`` and
  ``big_buck_bunny_0_30.webm``.

``Babble_4`` is left out: it is not steady noise (a cafe's voices), so it is
neither what destatic removes nor a fair target for a voice detector.

The mixtures are split, fixed and seeded, into a tuning half and a held-out
half (alternately within each group and noise, in a seeded order); both are
reported side by side. Tune on ``--half tune``; the held-out figures are the
results. Only the speech region is scored (PESQ, STOI, SI-SDR); each output's
lag is measured by cross-correlation. Peers with a delay (afftdn) have it
removed before scoring; destatic is scored as it comes out and must show
lag 0 and exact length on every item.

DeepFilterNet3's outputs and the score rows are cached under
``benchmarks/out/cache`` (``--cache``; :mod:`result_cache`): a re-run after a change in
destatic re-scores only destatic's methods, without running DFN3 again.

Run ``python benchmarks/quality.py --help`` for the options; results go to
``benchmarks/out/``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import common
import result_cache

METRICS = ("pesq", "stoi", "si_sdr", "bed_db")
LEAD_IN_S = 1.0
GROUP_B_PROFILE_S = 0.25
SNRS_DB = (0.0, 5.0, 10.0)
MAX_LAG_S = 0.1
HALVES = ("tune", "held")
QUICK_SHARE = 4
"""``--quick`` keeps one mixture in this many (in the seeded order, within each group, noise and half)."""
GROUP_TITLES = {
    "a": "a: speech + steady noise, 1 s noise-only lead-in (profile from the lead-in)",
    "b": "b: NOIZEUS and VoiceBank pairs, no lead-in (auto profile)",
    "c": "c: music and ambience to keep + noise, 1 s lead-in (SI-SDR only)",
    "d": "d: voice over a music bed 12 dB under it + noise at 5 dB, 1 s lead-in (SI-SDR against voice + bed; the bed's level after)",
}
GROUP_METRICS = {"a": ("pesq", "stoi", "si_sdr"), "b": ("pesq", "stoi", "si_sdr"), "c": ("si_sdr",), "d": ("si_sdr", "bed_db")}
STEADY_NOISES = common.SPEECH_NOISES + common.SYNTHETIC_NOISES
KEEP_RATE = 44100
KEEP_SNRS_DB = (5.0, 15.0)
KEEP_ITEMS = (
    # (label, video, start_s, end_s)
    ("piano", "chaplin.mp4", 0.0, None),
    ("forest", "big_buck_bunny_0_30.webm", 0.0, 9.5),
    ("score", "big_buck_bunny_0_30.webm", 9.5, 20.0),
    ("effects", "big_buck_bunny_0_30.webm", 20.0, None),
    ("room", "fire2.mp4", 0.0, None),
)
BED_DB = -12.0
"""The bed's power relative to the voice's (group d)."""
BED_NOISE_SNR_DB = 5.0
BEDS = (
    # (label, file under media, start_s, end_s); a bed shorter than the voice is looped
    ("song", "music/Karissa_Hobbs_-_Lets_Go_Fishin.hq.ogg", 5.0, 125.0),
    ("celesta", "music/Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.hq.ogg", 2.0, 115.0),
    ("piano", "video/chaplin.mp4", 0.0, None),
    ("score", "video/big_buck_bunny_0_30.webm", 9.5, 20.0),
)


def speakers() -> list[tuple[str, Path]]:
    """(corpus, path) of every shared clean speech file."""
    speech_dir = common.MEDIA_DIR / "speech"
    return (
        [("librispeech", path) for path in sorted(speech_dir.glob("*.flac"))]
        + [("noizeus", path) for path in sorted(speech_dir.glob("sp*.wav"))]
        + [("voicebank", path) for path in sorted((common.MEDIA_DIR / "pairs" / "voicebank" / "clean").glob("*.wav"))]
    )


def load_excerpt(path: Path, frames: int, rate: int, *, rng: np.random.Generator, span_s: tuple[float, float | None]) -> np.ndarray:
    """``frames`` samples at ``rate`` of a sound or video file's stretch, mono, from a random offset (looped if short)."""
    audio = common.load_video_audio(path, sample_rate=rate, start_s=span_s[0], end_s=span_s[1])
    return common.noise_excerpt(audio, frames, rng=rng)


@dataclass(frozen=True)
class Case:
    """One noisy/clean item: a mixture to build (groups a, c, d) or a stored pair (group b)."""

    group: str
    corpus: str
    speech: str
    noise: str
    snr_db: float | None
    clean_path: Path
    noisy_path: Path | None = None
    span_s: tuple[float, float | None] | None = None
    bed: str | None = None
    half: str = ""

    @property
    def name(self) -> str:
        snr = "" if self.snr_db is None else f"@{self.snr_db:g}dB"
        bed = "" if self.bed is None else f"+{self.bed}"
        return f"{self.speech}{bed}+{self.noise}{snr}"

    @property
    def lead_in_s(self) -> float:
        return 0.0 if self.group == "b" else LEAD_IN_S

    def load(self) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:
        """Return ``(noisy, reference, sample_rate, bed)``; mixtures are seeded by the case name.

        The reference is what the output is scored against (the voice plus
        the bed in group d); ``bed`` is the bed as mixed in (group d), else None.
        """
        if self.span_s is not None:
            rate = KEEP_RATE
            clean = common.load_video_audio(
                self.clean_path, sample_rate=rate, start_s=self.span_s[0], end_s=self.span_s[1]
            )
        else:
            clean, rate = common.load_mono(self.clean_path)
        if self.noisy_path is not None:
            noisy, noisy_rate = common.load_mono(self.noisy_path)
            if noisy_rate != rate or len(noisy) != len(clean):
                raise ValueError(f"{self.noisy_path} does not match {self.clean_path}")
            return noisy, clean, rate, None
        rng = np.random.default_rng(common.stable_seed(self.name))
        lead_in = int(self.lead_in_s * rate)
        noise = common.load_noise(self.noise, lead_in + len(clean), rate, rng=rng)
        if self.bed is None:
            noisy, clean = common.mix_at_snr(clean, noise, self.snr_db, lead_in=lead_in)
            return noisy, clean, rate, None
        _, path, start, end = next(item for item in BEDS if item[0] == self.bed)
        bed = load_excerpt(common.MEDIA_DIR / path, len(clean), rate, rng=rng, span_s=(start, end))
        bed *= np.sqrt(np.mean(clean**2) * 10 ** (BED_DB / 10) / np.mean(bed**2))
        voice_and_bed = clean + bed
        noise *= np.sqrt(np.mean(clean**2) / (np.mean(noise[lead_in:] ** 2) * 10 ** (self.snr_db / 10)))
        noisy = np.concatenate([np.zeros(lead_in), voice_and_bed]) + noise
        scale = min(1.0, common.PEAK_LIMIT / np.max(np.abs(noisy)))
        padded_bed = np.concatenate([np.zeros(lead_in), bed]) * scale
        return noisy * scale, np.concatenate([np.zeros(lead_in), voice_and_bed]) * scale, rate, padded_bed


def split_halves(cases: list[Case]) -> list[Case]:
    """Assign each case to the tuning or the held-out half: alternately within its group and noise (bed in group d), in a seeded order."""
    ordered = sorted(cases, key=lambda case: (case.group, case.bed or case.noise, common.stable_seed("half", case.name)))
    position: dict[tuple[str, str], int] = {}
    halves = {}
    for case in ordered:
        stratum = (case.group, case.bed or case.noise)
        index = position.get(stratum, 0)
        position[stratum] = index + 1
        halves[case.name, case.group] = HALVES[index % 2]
    return [Case(**{**case.__dict__, "half": halves[case.name, case.group]}) for case in cases]


def quick_subset(cases: list[Case]) -> list[Case]:
    """One case in :data:`QUICK_SHARE` of each group, noise (bed in group d) and half (the first ones in the seeded order)."""
    ordered = sorted(cases, key=lambda case: (case.group, case.bed or case.noise, case.half, common.stable_seed("quick", case.name)))
    position: dict[tuple[str, str, str], int] = {}
    kept = set()
    for case in ordered:
        stratum = (case.group, case.bed or case.noise, case.half)
        index = position.get(stratum, 0)
        position[stratum] = index + 1
        if index % QUICK_SHARE == 0:
            kept.add((case.name, case.group))
    return [case for case in cases if (case.name, case.group) in kept]


def group_a_cases() -> list[Case]:
    return [
        Case("a", corpus, path.name.split(".")[0], noise, snr, path)
        for corpus, path in speakers()
        for noise in STEADY_NOISES
        for snr in SNRS_DB
    ]


def group_b_cases() -> list[Case]:
    cases = []
    for path in sorted((common.MEDIA_DIR / "pairs" / "noizeus").glob("sp*_*_sn*.wav")):
        speech, noise, snr = path.stem.split("_")
        cases.append(Case("b", "noizeus", speech, noise, float(snr[2:]), common.MEDIA_DIR / "speech" / f"{speech}.wav", path))
    voicebank = common.MEDIA_DIR / "pairs" / "voicebank"
    for path in sorted((voicebank / "noisy").glob("*.wav")):
        cases.append(Case("b", "voicebank", path.stem, "demand", None, voicebank / "clean" / path.name, path))
    return cases


def group_c_cases() -> list[Case]:
    return [
        Case("c", label, label, noise, snr, common.MEDIA_DIR / "video" / video, span_s=(start, end))
        for label, video, start, end in KEEP_ITEMS
        for noise in STEADY_NOISES
        for snr in KEEP_SNRS_DB
    ]


def group_d_cases() -> list[Case]:
    """Every speaker over every bed; the noise goes round :data:`STEADY_NOISES` (each pair gets one)."""
    pairs = [(corpus, path, bed) for corpus, path in speakers() for bed, *_ in BEDS]
    return [
        Case("d", corpus, path.name.split(".")[0], STEADY_NOISES[index % len(STEADY_NOISES)], BED_NOISE_SNR_DB, path, bed=bed)
        for index, (corpus, path, bed) in enumerate(pairs)
    ]


GROUP_CASES = {"a": group_a_cases, "b": group_b_cases, "c": group_c_cases, "d": group_d_cases}


def all_cases(groups: str, *, quick: bool, halves: tuple[str, ...] = HALVES) -> list[Case]:
    """The cases of these groups with their halves (the split is the same whatever is selected)."""
    cases = split_halves([case for group in "abcd" for case in GROUP_CASES[group]()])
    cases = [case for case in cases if case.group in groups and case.half in halves]
    return quick_subset(cases) if quick else cases


@dataclass(frozen=True)
class Method:
    """A denoiser under test: ``run(noisy, sample_rate, case)`` returns the output."""

    label: str
    run: Callable[[np.ndarray, int, Case], np.ndarray]
    is_destatic: bool = False
    groups: str = "abcd"
    uses_destatic: bool = False
    """Whether its output depends on destatic's code (then its cached scores go with any edit of destatic)."""


def parse_spec(spec: str) -> tuple[str | None, dict[str, object]]:
    """``"logmmse:max_reduction_db=18,smoothing=0.95"`` -> ``("logmmse", {...})``; ``default`` -> None.

    Values are Python literals (numbers, True/False/None) or else strings;
    ``noise=auto`` overrides the group's noise argument with None.
    """
    name, _, rest = spec.partition(":")
    options: dict[str, object] = {}
    for item in filter(None, rest.split(",")):
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"--methods item {item!r} in {spec!r} must be key=value")
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text
    return (None if name == "default" else name), options


def noise_argument(case: Case) -> tuple[float, float] | None:
    return (0.0, case.lead_in_s) if case.lead_in_s else None


def destatic_method(spec: str) -> Method:
    """A destatic variant from a ``--methods`` spec; ``identity`` returns the input (harness check)."""
    if spec == "identity":
        return Method("destatic:identity", lambda noisy, rate, case: noisy, is_destatic=True, uses_destatic=True)
    method, options = parse_spec(spec)
    override = "noise" in options
    noise_override = options.pop("noise", None)
    if noise_override == "auto":
        noise_override = None

    def run(noisy: np.ndarray, rate: int, case: Case) -> np.ndarray:
        import destatic

        noise = noise_override if override else noise_argument(case)
        return destatic.denoise(noisy, rate, noise=noise, method=method, **options)

    return Method(f"destatic:{spec}", run, is_destatic=True, uses_destatic=True)


def _seed(noisy: np.ndarray, rate: int, case: Case) -> np.ndarray:
    import destatic

    return destatic.denoise(noisy, rate, noise=noise_argument(case), method="seed")


def _noisereduce(noisy: np.ndarray, rate: int, case: Case) -> np.ndarray:
    import noisereduce

    if case.lead_in_s:
        lead_in = noisy[: int(case.lead_in_s * rate)]
        return noisereduce.reduce_noise(y=noisy, sr=rate, stationary=True, y_noise=lead_in)
    return noisereduce.reduce_noise(y=noisy, sr=rate, stationary=False)


def _noisereduce_head(noisy: np.ndarray, rate: int, case: Case) -> np.ndarray:
    import noisereduce

    head = noisy[: int(GROUP_B_PROFILE_S * rate)]
    return noisereduce.reduce_noise(y=noisy, sr=rate, stationary=True, y_noise=head)


def _afftdn(noisy: np.ndarray, rate: int, case: Case) -> np.ndarray:
    return common.run_afftdn(noisy, rate)


def _afftdn_learn(noisy: np.ndarray, rate: int, case: Case) -> np.ndarray:
    return common.run_afftdn(noisy, rate, learn_seconds=(0.0, case.lead_in_s))


def _afftdn_track(noisy: np.ndarray, rate: int, case: Case) -> np.ndarray:
    return common.run_afftdn(noisy, rate, options="nr=24:nf=-30:tn=1")


def _sox(noisy: np.ndarray, rate: int, case: Case) -> np.ndarray:
    span = (0.0, case.lead_in_s or GROUP_B_PROFILE_S)
    return common.run_noisered(noisy, rate, profile_seconds=span)


def _dfn3(noisy: np.ndarray, rate: int, case: Case) -> np.ndarray:
    from destatic.dsp.learned import deepfilter

    return deepfilter(noisy, rate)


def peer_methods() -> list[Method]:
    peers = [
        Method("noisy", lambda noisy, rate, case: noisy),
        Method("seed", _seed, uses_destatic=True),
        Method("noisereduce", _noisereduce),
        Method("noisereduce-head", _noisereduce_head, groups="b"),
        Method("afftdn", _afftdn),
        Method("afftdn-learn", _afftdn_learn, groups="acd"),
        Method("afftdn-track", _afftdn_track, groups="b"),
    ]
    from destatic.dsp import learned_available

    if learned_available():
        peers.append(Method("dfn3", _dfn3, uses_destatic=True))
    else:
        print("no DeepFilterNet3 wheel: the dfn3 peer is left out", file=sys.stderr)
    if common.sox_exe() is not None:
        peers.append(Method("sox", _sox))
    else:
        print("SoX not found: the sox peer is left out (apt-get install sox)", file=sys.stderr)
    return peers


def bed_level_db(output: np.ndarray, voice: np.ndarray, bed: np.ndarray, noise: np.ndarray) -> float:
    """The bed's level in ``output`` relative to the input's, dB: its coefficient in the least-squares fit of
    ``output`` by ``a voice + b bed + c noise`` (the noise in the fit keeps its chance correlation with the bed out)."""
    basis = np.stack([voice, bed, noise], axis=1)
    (_, coefficient, _), *_ = np.linalg.lstsq(basis, output, rcond=None)
    return float(20 * np.log10(max(abs(coefficient), 1e-5)))


def score_output(
    case: Case, reference: np.ndarray, output: np.ndarray, rate: int, bed: np.ndarray | None, noisy: np.ndarray
) -> dict[str, float]:
    """The group's scores of an aligned output on the region after the lead-in (NaN for what the group does not score)."""
    start = int(case.lead_in_s * rate)
    if case.group in "ab":
        return {**common.score(reference[start:], output[start:], rate), "bed_db": float("nan")}
    scores = {"pesq": float("nan"), "stoi": float("nan"), "si_sdr": common.si_sdr(reference[start:], output[start:]),
              "pesq_failed": 0.0, "bed_db": float("nan")}
    if bed is not None:
        scores["bed_db"] = bed_level_db(output[start:], reference[start:] - bed[start:], bed[start:], noisy[start:] - reference[start:])
    return scores


def run_case(
    case: Case, specs: tuple[str, ...], peers: tuple[str, ...] | None = None, cache_dir: Path | None = None
) -> list[dict[str, object]]:
    """Run every method on one case and score the speech region of each output (from the cache where it is there)."""
    if cache_dir is not None:
        result_cache.install_dfn3_cache(cache_dir)
    cache = result_cache.ScoreCache(cache_dir)
    noisy, reference, rate, bed = case.load()
    mixture = f"{case.group}|{case.name}|{result_cache.samples_digest(noisy, reference)}"
    methods = [
        m for m in peer_methods() if case.group in m.groups and (peers is None or m.label in peers)
    ] + [destatic_method(s) for s in specs]
    rows = []
    for method in methods:
        cached = cache.get(mixture, method.label, method.uses_destatic)
        if cached is not None:
            rows.append({**cached, "half": case.half, "cached": True})
            continue
        began = time.perf_counter()
        output = np.asarray(method.run(noisy, rate, case), dtype=np.float64)
        seconds = time.perf_counter() - began
        lag = common.estimate_lag(reference, output, max_lag=int(MAX_LAG_S * rate))
        aligned = common.advance(output, 0 if method.is_destatic else lag, len(noisy))
        row = {
            "group": case.group,
            "half": case.half,
            "corpus": case.corpus,
            "case": case.name,
            "noise": case.noise,
            "bed": case.bed or "",
            "snr_db": "" if case.snr_db is None else case.snr_db,
            "sample_rate": rate,
            "method": method.label,
            "is_destatic": method.is_destatic,
            **score_output(case, reference, aligned, rate, bed, noisy),
            "lag_samples": lag,
            "lag_ms": 1000 * lag / rate,
            "length_diff": len(output) - len(noisy),
            "seconds": seconds,
        }
        cache.put(mixture, method.label, method.uses_destatic, row)
        rows.append({**row, "cached": False})
    return rows


def _mean(rows: list[dict[str, object]], key: str) -> float:
    values = np.array([float(r[key]) for r in rows])
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _misaligned(row: dict[str, object]) -> bool:
    return int(row["lag_samples"]) != 0 or int(row["length_diff"]) != 0


def earlier_rows(path: Path, cases: list[Case]) -> list[dict[str, object]]:
    """The destatic rows of an earlier run's ``quality_scores.csv`` for these cases, labelled ``METHOD@earlier``."""
    wanted = {(case.group, case.name) for case in cases}
    rows = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["is_destatic"] == "True" and (row["group"], row["case"]) in wanted:
                numbers = {key: float(row[key]) for key in (*METRICS, "pesq_failed", "lag_ms", "seconds")}
                numbers.update({key: int(float(row[key])) for key in ("lag_samples", "length_diff")})
                rows.append({**row, **numbers, "method": f"{row['method']}@earlier", "is_destatic": True, "cached": True})
    return rows


def summarise(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Mean of each metric per group, half and method, in first-seen method order."""
    summary = []
    for group in dict.fromkeys(r["group"] for r in rows):
        in_group = [r for r in rows if r["group"] == group]
        for half in (h for h in HALVES if any(r["half"] == h for r in in_group)):
            for method in dict.fromkeys(r["method"] for r in in_group):
                mine = [r for r in in_group if r["method"] == method and r["half"] == half]
                if not mine:
                    continue
                summary.append(
                    {
                        "group": group,
                        "half": half,
                        "method": method,
                        "is_destatic": mine[0]["is_destatic"],
                        "n": len(mine),
                        **{metric: _mean(mine, metric) for metric in METRICS},
                        "pesq_failed": int(sum(float(r["pesq_failed"]) for r in mine)),
                        "misaligned": sum(_misaligned(r) for r in mine),
                        "max_abs_lag_ms": max(abs(float(r["lag_ms"])) for r in mine),
                        "max_abs_length_diff": max(abs(int(r["length_diff"])) for r in mine),
                        "seconds": float(sum(float(r["seconds"]) for r in mine)),
                    }
                )
    return summary


def _find(summary: list[dict[str, object]], group: str, half: str, method: str) -> dict[str, object] | None:
    return next((s for s in summary if s["group"] == group and s["half"] == half and s["method"] == method), None)


def _noise_means(rows: list[dict[str, object]], group: str, half: str, method: str, metric: str) -> dict[str, float]:
    mine = [r for r in rows if r["group"] == group and r["half"] == half and r["method"] == method]
    return {noise: _mean([r for r in mine if r["noise"] == noise], metric) for noise in dict.fromkeys(r["noise"] for r in mine)}


CLASSIC_EXCLUDED = ("noisy", "dfn3")
"""Peers that are not classic denoisers (the keep group's target is the best classic peer)."""


def targets(rows: list[dict[str, object]], summary: list[dict[str, object]], baseline: str) -> list[dict[str, object]]:
    """Issue 30's targets for each destatic variant but the baseline, per half.

    Groups a and b: mean PESQ >= DFN3 alone's, PESQ per noise >= DFN3's - 0.1,
    STOI >= DFN3's, SI-SDR >= the baseline's (today's rule). Group c: SI-SDR
    >= the best classic peer's + 2 dB. Group d: SI-SDR >= the baseline's, the
    bed's level >= -3 dB. Every group: lag 0 and exact length on every item.
    """
    result = []

    def check(group: str, half: str, method: str, what: str, value: float, floor: float, where: str = "") -> None:
        result.append({"group": group, "half": half, "method": method, "target": what, "value": value,
                       "floor": floor, "meets": bool(value >= floor - 1e-9), "where": where})

    for entry in summary:
        group, half, method = entry["group"], entry["half"], entry["method"]
        if not entry["is_destatic"] or method == baseline:
            continue
        dfn3, base = _find(summary, group, half, "dfn3"), _find(summary, group, half, baseline)
        if group in "ab" and dfn3 is not None:
            check(group, half, method, "PESQ >= dfn3", entry["pesq"], dfn3["pesq"])
            mine, theirs = (_noise_means(rows, group, half, m, "pesq") for m in (method, "dfn3"))
            worst = min(mine, key=lambda noise: mine[noise] - theirs[noise])
            check(group, half, method, "PESQ per noise >= dfn3 - 0.1", mine[worst], theirs[worst] - 0.1, worst)
            check(group, half, method, "STOI >= dfn3", entry["stoi"], dfn3["stoi"])
        if group in "abd" and base is not None:
            check(group, half, method, f"SI-SDR >= {baseline}", entry["si_sdr"], base["si_sdr"])
        if group == "c":
            classic = [s for s in summary if s["group"] == group and s["half"] == half
                       and not s["is_destatic"] and s["method"] not in CLASSIC_EXCLUDED]
            if classic:
                best = max(classic, key=lambda s: s["si_sdr"])
                check(group, half, method, f"SI-SDR >= {best['method']} + 2", entry["si_sdr"], best["si_sdr"] + 2.0)
        if group == "d":
            check(group, half, method, "bed level >= -3 dB", entry["bed_db"], -3.0)
        check(group, half, method, "lag 0 and exact length on every item", -entry["misaligned"], 0)
    return result


def markdown_table(header: list[str], body: list[list[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in body]
    return "\n".join(lines)


def _pair(values: list[float], digits: int = 2) -> str:
    return " / ".join("-" if not np.isfinite(v) else f"{v:.{digits}f}" for v in values)


def summary_tables(rows: list[dict[str, object]], summary: list[dict[str, object]]) -> dict[str, str]:
    """Per group: the means, tuning / held-out side by side; then the scored metric by noise (and by bed)."""
    tables = {}
    for group in dict.fromkeys(s["group"] for s in summary):
        entries = [s for s in summary if s["group"] == group]
        methods = list(dict.fromkeys(s["method"] for s in entries))
        metrics = GROUP_METRICS[group]
        body = []
        for method in methods:
            halves = [_find(summary, group, half, method) for half in HALVES]
            present = [h for h in halves if h is not None]
            body.append(
                [method, _pair([h["n"] if h else float("nan") for h in halves], 0)]
                + [_pair([h[metric] if h else float("nan") for h in halves], 3 if metric in ("pesq", "stoi") else 2) for metric in metrics]
                + [sum(h["misaligned"] for h in present), max(h["max_abs_lag_ms"] for h in present),
                   max(h["max_abs_length_diff"] for h in present), sum(h["seconds"] for h in present)]
            )
        names = {"pesq": "PESQ", "stoi": "STOI", "si_sdr": "SI-SDR dB", "bed_db": "bed level dB"}
        header = ["method", "n tune / held"] + [f"{names[m]} tune / held" for m in metrics]
        header += ["items not lag 0 + exact length", "max |lag| ms", "max |len diff|", "time s"]
        parts = [markdown_table(header, body)]
        by = [("noise", metrics[0])] + ([("bed", "si_sdr"), ("bed", "bed_db")] if group == "d" else [])
        for key, metric in by:
            in_group = [r for r in rows if r["group"] == group]
            lines = []
            for value in dict.fromkeys(r[key] for r in in_group):
                lines.append([value] + [
                    _pair([_mean([r for r in in_group if r[key] == value and r["method"] == m and r["half"] == h], metric)
                           for h in HALVES])
                    for m in methods
                ])
            parts.append(f"{names[metric]} by {key} (tune / held):\n\n" + markdown_table([key] + methods, lines))
        tables[group] = "\n\n".join(parts)
    return tables


def targets_table(target_rows: list[dict[str, object]]) -> str:
    body = [
        [t["method"], t["group"], t["target"]]
        + [
            next((f"{u['value']:.3f} vs {u['floor']:.3f} {'yes' if u['meets'] else 'NO'}"
                  + (f" (worst: {u['where']})" if u["where"] else "") for u in target_rows
                  if u["method"] == t["method"] and u["group"] == t["group"] and u["target"] == t["target"]
                  and u["half"] == half), "-")
            for half in HALVES
        ]
        for t in target_rows
        if t["half"] == HALVES[0] or not any(
            u["half"] == HALVES[0] and u["method"] == t["method"] and u["group"] == t["group"] and u["target"] == t["target"]
            for u in target_rows
        )
    ]
    return markdown_table(["destatic", "group", "target", "tune", "held"], body)


def bar_chart(summary: list[dict[str, object]], path: Path) -> None:
    """Per group and scored metric, a bar per method and half (tuning light, held-out dark; destatic green)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(s["group"] for s in summary))  # zoomed: bars do not start at 0
    columns = max(len(GROUP_METRICS[g]) for g in groups)
    fig, axes = plt.subplots(len(groups), columns, figsize=(5.5 * columns, 4.2 * len(groups)), squeeze=False)
    for row, group in enumerate(groups):
        methods = list(dict.fromkeys(s["method"] for s in summary if s["group"] == group))
        for col in range(columns):
            ax = axes[row][col]
            if col >= len(GROUP_METRICS[group]):
                ax.axis("off")
                continue
            metric = GROUP_METRICS[group][col]
            values = []
            for offset, half in enumerate(HALVES):
                entries = [_find(summary, group, half, m) for m in methods]
                heights = [float(e[metric]) if e else np.nan for e in entries]
                colours = [("tab:green" if e and e["is_destatic"] else "tab:gray") for e in entries]
                bars = ax.bar(np.arange(len(methods)) + (offset - 0.5) * 0.4, heights, width=0.4, color=colours,
                              alpha=0.55 if half == "tune" else 1.0, label=half)
                ax.bar_label(bars, fmt="%.3g", fontsize=6)
                values += [h for h in heights if np.isfinite(h)]
            if values:
                span = max(values) - min(values) or 1.0
                ax.set_ylim(min(values) - 0.5 * span, max(values) + 0.25 * span)
            ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right", fontsize=8)
            ax.set_title(f"group {group}: {metric.upper().replace('_', '-')} (light: tune, dark: held out)")
            ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def check_specs(specs: list[str]) -> None:
    """Fail before the long run if a ``--methods`` spec is refused by destatic."""
    import destatic

    for spec in specs:
        if spec != "identity":
            method, options = parse_spec(spec)
            options.pop("noise", None)
            try:
                destatic.denoise(np.zeros(16000), 16000, method=method, **options)
            except destatic.ParameterError as error:
                raise SystemExit(f"--methods {spec!r}: {error}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"one mixture in {QUICK_SHARE} of each group, noise and half (a few minutes with a warm cache)")
    parser.add_argument("--half", choices=(*HALVES, "both"), default="both",
                        help="tune on 'tune'; 'held' is the held-out half (default both, side by side)")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["default"],
        metavar="SPEC",
        help="destatic variants scored side by side: default, identity, or METHOD[:key=value,...] "
        "with the options the method takes (its record in destatic.dsp.methods), e.g. wiener logmmse:max_reduction_db=18,time_smoothing_ms=20; "
        "noise=auto overrides the group's noise argument",
    )
    parser.add_argument("--baseline", default="destatic:default", metavar="LABEL",
                        help="the run's method that stands for today's rule in the targets (default destatic:default)")
    parser.add_argument("--earlier", type=Path, default=None, metavar="CSV",
                        help="add the destatic rows of an earlier run's quality_scores.csv as METHOD@earlier "
                        "(e.g. --baseline destatic:default@earlier to hold a new rule against today's)")
    parser.add_argument("--peers", nargs="*", default=None, metavar="NAME",
                        help="only these peers (e.g. noisy sox seed dfn3); default all")
    parser.add_argument("--groups", default="abcd", help="which groups to run: any of a, b, c, d (default abcd)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default 2)")
    parser.add_argument("--out", type=Path, default=common.OUT_DIR, help="output folder (default benchmarks/out)")
    parser.add_argument("--cache", type=Path, default=common.OUT_DIR / "cache",
                        help="where DFN3's outputs and the scores are cached (default benchmarks/out/cache)")
    parser.add_argument("--no-cache", action="store_true", help="run DeepFilterNet3 and score every method afresh")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.require_media()
    check_specs(args.methods)
    halves = HALVES if args.half == "both" else (args.half,)
    cases = all_cases(args.groups, quick=args.quick, halves=halves)
    cases.sort(key=lambda case: case.group in "ad" and case.corpus == "librispeech", reverse=True)  # long ones first
    specs = tuple(args.methods)
    cache_dir = None if args.no_cache else args.cache
    began = time.perf_counter()
    print(f"{len(cases)} cases, methods {', '.join(specs)}, {args.jobs} job(s), load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    rows = []
    peers = None if args.peers is None else tuple(args.peers)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for done, result in enumerate(
            pool.map(run_case, cases, [specs] * len(cases), [peers] * len(cases), [cache_dir] * len(cases)), start=1
        ):
            rows += result
            print(f"\r{done}/{len(cases)} cases, {time.perf_counter() - began:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    if args.earlier is not None:
        rows += earlier_rows(args.earlier, cases)
    summary = summarise(rows)
    target_rows = targets(rows, summary, args.baseline)
    tables = summary_tables(rows, summary)

    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "quality_scores.csv", rows)
    write_csv(args.out / "quality_summary.csv", summary)
    if target_rows:
        write_csv(args.out / "quality_targets.csv", target_rows)
    title = f"# destatic quality benchmark{' (quick)' if args.quick else ''}, halves: {', '.join(halves)}"
    report = [title, ""]
    for group, table in tables.items():
        report += [f"## Group {GROUP_TITLES[group]}", "", table, ""]
    if target_rows:
        report += [f"## Issue 30's targets (baseline: {args.baseline})", "", targets_table(target_rows), ""]
    (args.out / "quality.md").write_text("\n".join(report) + "\n")
    bar_chart(summary, args.out / "quality.png")
    print("\n".join(report))
    cached = sum(bool(r["cached"]) for r in rows)
    print(f"\n{len(rows)} scores ({cached} from the cache) in {time.perf_counter() - began:.0f} s, "
          f"load {os.getloadavg()[0]:.2f}; tables and chart in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
