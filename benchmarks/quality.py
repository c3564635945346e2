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
- ``e``: cases a rule that keeps "what persists over the profile" gets wrong:
  steady noise that grows 12 dB louder than the lead-in partway (under a
  voice, and alone), hum whose profile comes from a separate recording (its
  tones have no phase, so they cannot be cancelled), and stereo with
  independent noise in each channel; scored by PESQ, STOI, SI-SDR and the
  noise left (dB, least-squares projection on the voice and the noise).

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

METRICS = ("pesq", "stoi", "si_sdr", "bed_db", "noise_db")
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
    "e": "e: noise growing 12 dB over the lead-in, hum from a separate recording, stereo with independent noise (noise left, dB)",
}
GROUP_METRICS = {"a": ("pesq", "stoi", "si_sdr"), "b": ("pesq", "stoi", "si_sdr"), "c": ("si_sdr",), "d": ("si_sdr", "bed_db"),
                 "e": ("pesq", "stoi", "si_sdr", "noise_db")}
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
LOUDER_DB = 12.0
"""Group e: how much louder than the lead-in the noise grows partway."""
LOUDER_FROM = 0.4
"""... from this share of the item after the lead-in (over :data:`LOUDER_RAMP_S`)."""
LOUDER_RAMP_S = 0.2
LOUDER_SNR_DB = 10.0
"""Group e: speech over the noise before it grows (after it: 10 - 12 = -2 dB)."""
LOUDER_NOISES = ("white", "pink", "AirConditioner_6")
ALONE_S = 8.0
"""Group e: length of the noise-alone items after the lead-in."""
ALONE_RATE = 16000
ALONE_LEVEL = 0.02
"""Group e: RMS of the noise-alone items before they grow (0.08 after).""" 
SEPARATE_HUM_SNR_DB = 5.0
SEPARATE_HISS_DB = -30.0
"""Group e: the hiss under the hum (in the mixture and in the separate recording), relative to the hum."""
SEPARATE_RECORDING_S = 2.0
SEPARATE_PAUSE_S = 2.0
"""Group e: hum alone after the lead-in before the voice starts (where a rule for what is not voice acts)."""
STEREO_NOISES = ("white", "AirConditioner_6")
STEREO_SNR_DB = 5.0
SAFETY_SPEAKERS = 2
"""Group e: speakers per kind and noise (the first of each corpus in turn; one for each half)."""


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
    kind: str | None = None
    """Group e: ``louder``, ``louder-alone``, ``hum-separate`` or ``stereo``."""

    @property
    def name(self) -> str:
        snr = "" if self.snr_db is None else f"@{self.snr_db:g}dB"
        bed = "" if self.bed is None else f"+{self.bed}"
        kind = "" if self.kind is None else f"{self.kind}:"
        return f"{kind}{self.speech}{bed}+{self.noise}{snr}"

    @property
    def noise_label(self) -> str:
        """The noise column of the score rows: the noise (kind and noise in group e)."""
        return self.stratum if self.kind is not None else self.noise

    @property
    def stratum(self) -> str:
        """What the halves are balanced over, and the per-noise rows name: the noise (the bed in group d, kind and noise in e)."""
        if self.kind is not None:
            return f"{self.kind} {self.noise}"
        return self.bed or self.noise

    @property
    def lead_in_s(self) -> float:
        return 0.0 if self.group == "b" else LEAD_IN_S

    def load(self) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:
        """Return ``(noisy, reference, sample_rate, bed)``; mixtures are seeded by the case name.

        The reference is what the output is scored against (the voice plus
        the bed in group d); ``bed`` is the bed as mixed in (group d), else None.
        Stereo items (group e) are ``(n, 2)``.
        """
        if self.kind is not None:
            noisy, reference, rate = self._load_safety()
            return noisy, reference, rate, None
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


    def _load_safety(self) -> tuple[np.ndarray, np.ndarray, int]:
        rng = np.random.default_rng(common.stable_seed(self.name))
        if self.kind == "louder-alone":
            rate, clean = ALONE_RATE, np.zeros(int(ALONE_S * ALONE_RATE))
        else:
            clean, rate = common.load_mono(self.clean_path)
        lead_in = int(self.lead_in_s * rate)
        total = lead_in + len(clean)
        if self.kind == "stereo":
            noises = [common.load_noise(self.noise, total, rate, rng=rng) for _ in range(2)]
            pairs = [common.mix_at_snr(clean, noise, self.snr_db, lead_in=lead_in) for noise in noises]
            scale = min(1.0, common.PEAK_LIMIT / max(np.max(np.abs(noisy)) for noisy, _ in pairs))
            return (np.stack([noisy for noisy, _ in pairs], axis=1) * scale, np.stack([ref for _, ref in pairs], axis=1) * scale, rate)
        if self.kind == "hum-separate":
            clean = np.concatenate([np.zeros(int(SEPARATE_PAUSE_S * rate)), clean])
            total = lead_in + len(clean)
            noise = common.load_noise("hum", total, rate, rng=rng)
            noise += rng.standard_normal(total) * 10 ** (SEPARATE_HISS_DB / 20)
            noisy, reference = common.mix_at_snr(clean, noise, self.snr_db, lead_in=lead_in)
            return noisy, reference, rate
        noise = common.load_noise(self.noise, total, rate, rng=rng)
        start = lead_in + int(LOUDER_FROM * len(clean))
        ramp = np.clip((np.arange(total) - start) / (LOUDER_RAMP_S * rate), 0, 1)
        noise *= 10 ** (LOUDER_DB * ramp / 20)
        if self.kind == "louder-alone":
            noise *= ALONE_LEVEL / np.sqrt(np.mean(noise[:lead_in] ** 2))
            return noise, np.zeros(total), rate
        quiet = noise[lead_in:start]
        noise *= np.sqrt(np.mean(clean**2) / (np.mean(quiet**2) * 10 ** (self.snr_db / 10)))
        noisy = np.concatenate([np.zeros(lead_in), clean]) + noise
        scale = min(1.0, common.PEAK_LIMIT / np.max(np.abs(noisy)))
        return noisy * scale, np.concatenate([np.zeros(lead_in), clean]) * scale, rate

    def noise_recording(self) -> np.ndarray | None:
        """The separate noise recording destatic learns from (``hum-separate``: other phases, other hiss), else None."""
        if self.kind != "hum-separate":
            return None
        _, rate = common.load_mono(self.clean_path)
        rng = np.random.default_rng(common.stable_seed("recording", self.name))
        frames = int(SEPARATE_RECORDING_S * rate)
        recording = common.load_noise("hum", frames, rate, rng=rng) + rng.standard_normal(frames) * 10 ** (SEPARATE_HISS_DB / 20)
        noisy, reference, _ = self._load_safety()
        start = int(self.lead_in_s * rate)
        level = np.sqrt(np.mean((noisy - reference)[start:] ** 2) / np.mean(recording**2))
        return recording * level


def split_halves(cases: list[Case]) -> list[Case]:
    """Assign each case to the tuning or the held-out half: alternately within its group and noise (bed in group d), in a seeded order."""
    ordered = sorted(cases, key=lambda case: (case.group, case.stratum, common.stable_seed("half", case.name)))
    position: dict[tuple[str, str], int] = {}
    halves = {}
    for case in ordered:
        stratum = (case.group, case.stratum)
        index = position.get(stratum, 0)
        position[stratum] = index + 1
        halves[case.name, case.group] = HALVES[index % 2]
    return [Case(**{**case.__dict__, "half": halves[case.name, case.group]}) for case in cases]


def quick_subset(cases: list[Case]) -> list[Case]:
    """One case in :data:`QUICK_SHARE` of each group, noise (bed in group d) and half (the first ones in the seeded order);
    every case of group e (it is small)."""
    ordered = sorted(cases, key=lambda case: (case.group, case.stratum, case.half, common.stable_seed("quick", case.name)))
    position: dict[tuple[str, str, str], int] = {}
    kept = set()
    for case in ordered:
        stratum = (case.group, case.stratum, case.half)
        index = position.get(stratum, 0)
        position[stratum] = index + 1
        if case.group == "e" or index % QUICK_SHARE == 0:
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


def group_e_cases() -> list[Case]:
    """:data:`SAFETY_SPEAKERS` speakers (one per corpus in turn) for each kind and noise; the noise-alone items by seed."""
    by_corpus: dict[str, list[Path]] = {}
    for corpus, path in speakers():
        by_corpus.setdefault(corpus, []).append(path)
    chosen = [(corpus, paths[0]) for corpus, paths in by_corpus.items()]
    pairs = [chosen[index % len(chosen)] for index in range(SAFETY_SPEAKERS)]
    cases = []
    for noise in LOUDER_NOISES:
        cases += [Case("e", corpus, path.name.split(".")[0], noise, LOUDER_SNR_DB, path, kind="louder") for corpus, path in pairs]
        cases += [Case("e", "none", f"alone{seed}", noise, None, pairs[0][1], kind="louder-alone") for seed in range(SAFETY_SPEAKERS)]
    cases += [Case("e", corpus, path.name.split(".")[0], "hum", SEPARATE_HUM_SNR_DB, path, kind="hum-separate") for corpus, path in pairs]
    cases += [Case("e", corpus, path.name.split(".")[0], noise, STEREO_SNR_DB, path, kind="stereo")
              for noise in STEREO_NOISES for corpus, path in pairs]
    return cases


GROUP_CASES = {"a": group_a_cases, "b": group_b_cases, "c": group_c_cases, "d": group_d_cases, "e": group_e_cases}


def all_cases(groups: str, *, quick: bool, halves: tuple[str, ...] = HALVES) -> list[Case]:
    """The cases of these groups with their halves (the split is the same whatever is selected)."""
    cases = split_halves([case for group in "abcde" for case in GROUP_CASES[group]()])
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


def noise_argument(case: Case) -> tuple[float, float] | np.ndarray | None:
    """destatic's ``noise`` for a case: its separate recording, else its lead-in, else None (auto)."""
    recording = case.noise_recording()
    if recording is not None:
        return recording
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
        Method("noisy", lambda noisy, rate, case: noisy, groups="abcde"),
        Method("seed", _seed, uses_destatic=True, groups="abcde"),
        Method("noisereduce", _noisereduce),
        Method("noisereduce-head", _noisereduce_head, groups="b"),
        Method("afftdn", _afftdn),
        Method("afftdn-learn", _afftdn_learn, groups="acd"),
        Method("afftdn-track", _afftdn_track, groups="b"),
    ]
    from destatic.dsp import learned_available

    if learned_available():
        peers.append(Method("dfn3", _dfn3, uses_destatic=True, groups="abcde"))
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


def noise_level_db(output: np.ndarray, voice: np.ndarray, noise: np.ndarray) -> float:
    """The noise's level in ``output`` relative to the input's, dB: its coefficient in the least-squares fit of
    ``output`` by ``a voice + c noise`` (by the noise alone where there is no voice)."""
    basis = np.stack([voice, noise] if np.any(voice) else [noise], axis=1)
    coefficients, *_ = np.linalg.lstsq(basis, output, rcond=None)
    return float(20 * np.log10(max(abs(coefficients[-1]), 1e-5)))


def score_output(
    case: Case, reference: np.ndarray, output: np.ndarray, rate: int, bed: np.ndarray | None, noisy: np.ndarray
) -> dict[str, float]:
    """The group's scores of an aligned output on the region after the lead-in (NaN for what the group does not score).

    Stereo items: the mean of the channels' scores.
    """
    if reference.ndim == 2:
        each = [score_output(case, reference[:, c], output[:, c], rate, bed, noisy[:, c]) for c in range(reference.shape[1])]
        return {key: float(np.mean([scores[key] for scores in each])) for key in each[0]}
    start = int(case.lead_in_s * rate)
    nothing = {"pesq": float("nan"), "stoi": float("nan"), "si_sdr": float("nan"), "pesq_failed": 0.0,
               "bed_db": float("nan"), "noise_db": float("nan")}
    if case.group == "e":
        speech = {} if not np.any(reference) else common.score(reference[start:], output[start:], rate)
        noise = noisy[start:] - reference[start:]
        return {**nothing, **speech, "noise_db": noise_level_db(output[start:], reference[start:], noise)}
    if case.group in "ab":
        return {**nothing, **common.score(reference[start:], output[start:], rate)}
    scores = {**nothing, "si_sdr": common.si_sdr(reference[start:], output[start:])}
    if bed is not None:
        scores["bed_db"] = bed_level_db(output[start:], reference[start:] - bed[start:], bed[start:], noisy[start:] - reference[start:])
    return scores


def output_lag(reference: np.ndarray, output: np.ndarray, rate: int) -> int:
    """The output's delay behind the reference in samples (stereo: the channel furthest off; a silent reference: 0)."""
    if reference.ndim == 2:
        lags = [output_lag(reference[:, c], output[:, c], rate) for c in range(reference.shape[1])]
        return max(lags, key=abs)
    if not np.any(reference):
        return 0
    return common.estimate_lag(reference, output, max_lag=int(MAX_LAG_S * rate))


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
        lag = output_lag(reference, output, rate)
        shift = 0 if method.is_destatic else lag
        aligned = (common.advance(output, shift, len(noisy)) if output.ndim == 1
                   else np.stack([common.advance(column, shift, len(noisy)) for column in output.T], axis=1))
        row = {
            "group": case.group,
            "half": case.half,
            "corpus": case.corpus,
            "case": case.name,
            "noise": case.noise_label,
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
    values = np.array([float(r.get(key, "nan")) for r in rows])  # rows cached before a metric was added lack it
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
                numbers = {key: float(row.get(key) or "nan") for key in (*METRICS, "pesq_failed", "lag_ms", "seconds")}
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


SAFETY_PESQ_SLACK = 0.01
SAFETY_NOISE_SLACK_DB = 1.0
CLASSIC_EXCLUDED = ("noisy", "dfn3")
"""Peers that are not classic denoisers (the keep group's target is the best classic peer)."""


def targets(rows: list[dict[str, object]], summary: list[dict[str, object]], baseline: str) -> list[dict[str, object]]:
    """Issue 30's targets for each destatic variant but the baseline, per half.

    Groups a and b: mean PESQ >= DFN3 alone's, PESQ per noise >= DFN3's - 0.1,
    STOI >= DFN3's, SI-SDR >= the baseline's (today's rule). Group c: SI-SDR
    >= the best classic peer's + 2 dB. Group d: SI-SDR >= the baseline's, the
    bed's level >= -3 dB. Group e: PESQ no more than :data:`SAFETY_PESQ_SLACK` under the
    baseline's, the noise left of every kind and noise at most :data:`SAFETY_NOISE_SLACK_DB`
    over the baseline's. Every group: lag 0 and exact length on every item.
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
        if group == "e" and base is not None:
            check(group, half, method, f"PESQ >= {baseline} - {SAFETY_PESQ_SLACK}", entry["pesq"], base["pesq"] - SAFETY_PESQ_SLACK)
            mine, theirs = (_noise_means(rows, group, half, m, "noise_db") for m in (method, baseline))
            worst = max(mine, key=lambda kind: mine[kind] - theirs[kind])
            check(group, half, method, f"noise left per kind <= {baseline}'s + {SAFETY_NOISE_SLACK_DB} dB",
                  -mine[worst], -theirs[worst] - SAFETY_NOISE_SLACK_DB, worst)
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
        names = {"pesq": "PESQ", "stoi": "STOI", "si_sdr": "SI-SDR dB", "bed_db": "bed level dB", "noise_db": "noise left dB"}
        header = ["method", "n tune / held"] + [f"{names[m]} tune / held" for m in metrics]
        header += ["items not lag 0 + exact length", "max |lag| ms", "max |len diff|", "time s"]
        parts = [markdown_table(header, body)]
        by = [("noise", metrics[0])] + ([("bed", "si_sdr"), ("bed", "bed_db")] if group == "d" else [])
        by += [("noise", "noise_db")] if group == "e" else []
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
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(key for row in rows for key in row)), restval="nan")
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
    parser.add_argument("--groups", default="abcde", help="which groups to run: any of a, b, c, d, e (default abcde)")
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
