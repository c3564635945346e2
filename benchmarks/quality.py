"""Quality benchmark: destatic against noisereduce, ffmpeg afftdn and SoX noisered.

Group ``a``: the clean speech in ``media/speech`` mixed with three real noises,
white hiss and 50 Hz hum at 0/5/10 dB SNR after a 1 s noise-only lead-in; every
tool learns the noise from the lead-in. Group ``b``: the NOIZEUS and VoiceBank
noisy/clean pairs, speech from the start, no lead-in (destatic's ``auto``).
Group ``c``: content that must be kept, the music and ambience of the shared
videos (the piano of ``chaplin.mp4``, the forest, score and effects of
``big_buck_bunny_0_30.webm``, the room sound of ``fire2.mp4``) at 44.1 kHz
under the same noises at 5 and 15 dB after a 1 s lead-in, scored by SI-SDR
only (the videos' own audio is the reference, itself not perfectly clean).
Only the speech region is scored (PESQ, STOI, SI-SDR); each output's lag is
measured by cross-correlation. Peers with a delay (afftdn) have it removed
before scoring; destatic is scored as it comes out and must show lag 0.

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

METRICS = ("pesq", "stoi", "si_sdr")
TARGETS = {"pesq": 0.15, "stoi": 0.0, "si_sdr": 1.5}
LEAD_IN_S = 1.0
GROUP_B_PROFILE_S = 0.25
SNRS_DB = (0.0, 5.0, 10.0)
MAX_LAG_S = 0.1
GROUP_TITLES = {
    "a": "a: clean speech + noise, 1 s noise-only lead-in (profile from the lead-in)",
    "b": "b: NOIZEUS and VoiceBank pairs, no lead-in (auto profile)",
    "c": "c: music and ambience to keep + noise, 1 s lead-in (SI-SDR only)",
}
GROUP_METRICS = {"a": METRICS, "b": METRICS, "c": ("si_sdr",)}
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


@dataclass(frozen=True)
class Case:
    """One noisy/clean item: either a mixture to build (group a) or a stored pair (group b)."""

    group: str
    corpus: str
    speech: str
    noise: str
    snr_db: float | None
    clean_path: Path
    noisy_path: Path | None = None
    span_s: tuple[float, float | None] | None = None

    @property
    def name(self) -> str:
        snr = "" if self.snr_db is None else f"@{self.snr_db:g}dB"
        return f"{self.speech}+{self.noise}{snr}"

    @property
    def lead_in_s(self) -> float:
        return LEAD_IN_S if self.group in "ac" else 0.0

    def load(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Return ``(noisy, clean, sample_rate)``; mixtures are seeded by the case name."""
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
            return noisy, clean, rate
        rng = np.random.default_rng(common.stable_seed(self.name))
        lead_in = int(self.lead_in_s * rate)
        noise = common.load_noise(self.noise, lead_in + len(clean), rate, rng=rng)
        noisy, clean = common.mix_at_snr(clean, noise, self.snr_db, lead_in=lead_in)
        return noisy, clean, rate


def group_a_cases(*, quick: bool) -> list[Case]:
    speech_dir = common.MEDIA_DIR / "speech"
    speeches = sorted(speech_dir.glob("*.flac")) + sorted(speech_dir.glob("sp*.wav"))
    noises = common.SPEECH_NOISES + common.SYNTHETIC_NOISES
    snrs = SNRS_DB
    if quick:
        speeches = [speech_dir / "198-209-0000.decoded.flac", speech_dir / "sp01.wav"]
        snrs = (5.0,)
    return [
        Case("a", "librispeech" if path.suffix == ".flac" else "noizeus", path.name.split(".")[0], noise, snr, path)
        for path in speeches
        for noise in noises
        for snr in snrs
    ]


def group_b_cases(*, quick: bool) -> list[Case]:
    cases = []
    for path in sorted((common.MEDIA_DIR / "pairs" / "noizeus").glob("sp*_*_sn*.wav")):
        speech, noise, snr = path.stem.split("_")
        if quick and (speech != "sp01" or snr != "sn5"):
            continue
        cases.append(Case("b", "noizeus", speech, noise, float(snr[2:]), common.MEDIA_DIR / "speech" / f"{speech}.wav", path))
    voicebank = common.MEDIA_DIR / "pairs" / "voicebank"
    for path in sorted((voicebank / "noisy").glob("*.wav"))[: 2 if quick else None]:
        cases.append(Case("b", "voicebank", path.stem, "demand", None, voicebank / "clean" / path.name, path))
    return cases


def group_c_cases(*, quick: bool) -> list[Case]:
    items = KEEP_ITEMS[:3:2] if quick else KEEP_ITEMS
    snrs = (15.0,) if quick else KEEP_SNRS_DB
    return [
        Case("c", label, label, noise, snr, common.MEDIA_DIR / "video" / video, span_s=(start, end))
        for label, video, start, end in items
        for noise in common.SPEECH_NOISES + common.SYNTHETIC_NOISES
        for snr in snrs
    ]


@dataclass(frozen=True)
class Method:
    """A denoiser under test: ``run(noisy, sample_rate, case)`` returns the output."""

    label: str
    run: Callable[[np.ndarray, int, Case], np.ndarray]
    is_destatic: bool = False
    groups: str = "abc"


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
        return Method("destatic:identity", lambda noisy, rate, case: noisy, is_destatic=True)
    method, options = parse_spec(spec)
    override = "noise" in options
    noise_override = options.pop("noise", None)
    if noise_override == "auto":
        noise_override = None

    def run(noisy: np.ndarray, rate: int, case: Case) -> np.ndarray:
        import destatic

        noise = noise_override if override else noise_argument(case)
        return destatic.denoise(noisy, rate, noise=noise, method=method, **options)

    return Method(f"destatic:{spec}", run, is_destatic=True)


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
        Method("seed", _seed),
        Method("noisereduce", _noisereduce),
        Method("noisereduce-head", _noisereduce_head, groups="b"),
        Method("afftdn", _afftdn),
        Method("afftdn-learn", _afftdn_learn, groups="ac"),
        Method("afftdn-track", _afftdn_track, groups="b"),
    ]
    from destatic.dsp import learned_available

    if learned_available():
        peers.append(Method("dfn3", _dfn3))
    else:
        print("no DeepFilterNet3 wheel: the dfn3 peer is left out", file=sys.stderr)
    if common.sox_exe() is not None:
        peers.append(Method("sox", _sox))
    else:
        print("SoX not found: the sox peer is left out (apt-get install sox)", file=sys.stderr)
    return peers


def run_case(case: Case, specs: tuple[str, ...], peers: tuple[str, ...] | None = None) -> list[dict[str, object]]:
    """Run every method on one case and score the speech region of each output."""
    noisy, clean, rate = case.load()
    start = int(case.lead_in_s * rate)
    methods = [
        m for m in peer_methods() if case.group in m.groups and (peers is None or m.label in peers)
    ] + [destatic_method(s) for s in specs]
    rows = []
    for method in methods:
        began = time.perf_counter()
        output = np.asarray(method.run(noisy, rate, case), dtype=np.float64)
        seconds = time.perf_counter() - began
        lag = common.estimate_lag(clean, output, max_lag=int(MAX_LAG_S * rate))
        aligned = common.advance(output, 0 if method.is_destatic else lag, len(noisy))
        if case.group == "c":
            scores = {"pesq": float("nan"), "stoi": float("nan"),
                      "si_sdr": common.si_sdr(clean[start:], aligned[start:]), "pesq_failed": 0.0}
        else:
            scores = common.score(clean[start:], aligned[start:], rate)
        rows.append(
            {
                "group": case.group,
                "corpus": case.corpus,
                "case": case.name,
                "noise": case.noise,
                "snr_db": "" if case.snr_db is None else case.snr_db,
                "sample_rate": rate,
                "method": method.label,
                "is_destatic": method.is_destatic,
                **scores,
                "lag_samples": lag,
                "lag_ms": 1000 * lag / rate,
                "length_diff": len(output) - len(noisy),
                "seconds": seconds,
            }
        )
    return rows


def _mean(rows: list[dict[str, object]], key: str) -> float:
    values = np.array([float(r[key]) for r in rows])
    return float(np.mean(values)) if np.isfinite(values).any() else float("nan")


def summarise(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Mean of each metric per group and method, in first-seen method order."""
    summary = []
    for group in dict.fromkeys(r["group"] for r in rows):
        in_group = [r for r in rows if r["group"] == group]
        for method in dict.fromkeys(r["method"] for r in in_group):
            mine = [r for r in in_group if r["method"] == method]
            summary.append(
                {
                    "group": group,
                    "method": method,
                    "is_destatic": mine[0]["is_destatic"],
                    "n": len(mine),
                    **{metric: _mean(mine, metric) for metric in METRICS},
                    "pesq_failed": int(sum(float(r["pesq_failed"]) for r in mine)),
                    "max_abs_lag_ms": max(abs(float(r["lag_ms"])) for r in mine),
                    "max_abs_length_diff": max(abs(int(r["length_diff"])) for r in mine),
                    "seconds": float(sum(float(r["seconds"]) for r in mine)),
                }
            )
    return summary


def margins(summary: list[dict[str, object]]) -> list[dict[str, object]]:
    """Each destatic variant's margin over the best peer, per group and metric, against the targets."""
    result = []
    for group in dict.fromkeys(s["group"] for s in summary):
        peers = [s for s in summary if s["group"] == group and not s["is_destatic"]]
        for variant in (s for s in summary if s["group"] == group and s["is_destatic"]):
            for metric in GROUP_METRICS[group]:
                best = max(peers, key=lambda s: s[metric])
                margin = float(variant[metric]) - float(best[metric])
                result.append(
                    {
                        "group": group,
                        "method": variant["method"],
                        "metric": metric,
                        "value": variant[metric],
                        "best_peer": best["method"],
                        "best_peer_value": best[metric],
                        "margin": margin,
                        "target": TARGETS[metric],
                        "meets": margin >= TARGETS[metric],
                        "lag_zero": variant["max_abs_lag_ms"] == 0 and variant["max_abs_length_diff"] == 0,
                    }
                )
    return result


def markdown_table(header: list[str], body: list[list[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in body]
    return "\n".join(lines)


def summary_tables(summary: list[dict[str, object]], margin_rows: list[dict[str, object]]) -> dict[str, str]:
    tables = {}
    for group in dict.fromkeys(s["group"] for s in summary):
        scores = markdown_table(
            ["method", "n", "PESQ", "STOI", "SI-SDR dB", "PESQ fails", "max |lag| ms", "max |len diff|", "time s"],
            [
                [s["method"], s["n"], s["pesq"], s["stoi"], s["si_sdr"], s["pesq_failed"],
                 s["max_abs_lag_ms"], s["max_abs_length_diff"], s["seconds"]]
                for s in summary
                if s["group"] == group
            ],
        )
        margin = markdown_table(
            ["destatic", "metric", "value", "best peer", "peer value", "margin", "target", "meets", "lag 0"],
            [
                [m["method"], m["metric"], m["value"], m["best_peer"], m["best_peer_value"],
                 f"{m['margin']:+.3f}", f">= {m['target']:+g}", "yes" if m["meets"] else "NO",
                 "yes" if m["lag_zero"] else "NO"]
                for m in margin_rows
                if m["group"] == group
            ],
        )
        tables[group] = scores + "\n\n" + margin
    return tables


def breakdown_tables(rows: list[dict[str, object]]) -> list[str]:
    """Per corpus, noise and SNR: "PESQ / STOI / SI-SDR" of every method."""
    out = []
    for group in dict.fromkeys(r["group"] for r in rows):
        in_group = [r for r in rows if r["group"] == group]
        methods = list(dict.fromkeys(r["method"] for r in in_group))
        for key in ("corpus", "noise", "snr_db"):
            body = []
            for value in dict.fromkeys(r[key] for r in in_group):
                selected = [r for r in in_group if r[key] == value]
                body.append(
                    [value]
                    + [
                        " / ".join(
                            f"{_mean([r for r in selected if r['method'] == m], metric):.2f}" for metric in METRICS
                        )
                        for m in methods
                    ]
                )
            out.append(f"### Group {group} by {key} (PESQ / STOI / SI-SDR)\n\n" + markdown_table([key] + methods, body))
    return out


def bar_chart(summary: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(s["group"] for s in summary))  # zoomed: bars do not start at 0
    fig, axes = plt.subplots(len(groups), len(METRICS), figsize=(15, 4.2 * len(groups)), squeeze=False)
    for row, group in enumerate(groups):
        entries = [s for s in summary if s["group"] == group]
        labels = [str(s["method"]) for s in entries]
        colours = ["tab:green" if s["is_destatic"] else "tab:gray" for s in entries]
        for col, metric in enumerate(METRICS):
            ax = axes[row][col]
            if metric not in GROUP_METRICS[group]:
                ax.axis("off")
                continue
            values = [float(s[metric]) for s in entries]
            bars = ax.bar(range(len(entries)), values, color=colours)
            ax.bar_label(bars, fmt="%.3g", fontsize=7)
            span = max(values) - min(values) or 1.0
            ax.set_ylim(min(values) - 0.5 * span, max(values) + 0.25 * span)
            ax.set_xticks(range(len(entries)), labels, rotation=45, ha="right", fontsize=8)
            ax.set_title(f"group {group}: {metric.upper().replace('_', '-')}")
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
    parser.add_argument("--quick", action="store_true", help="a subset for tuning (< 2 minutes)")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["default"],
        metavar="SPEC",
        help="destatic variants scored side by side: default, identity, or METHOD[:key=value,...] "
        "with SuppressionOptions fields, e.g. wiener logmmse:max_reduction_db=18,time_smoothing_ms=20; "
        "noise=auto overrides the group's noise argument",
    )
    parser.add_argument("--peers", nargs="*", default=None, metavar="NAME",
                        help="only these peers (e.g. noisy sox seed); default all")
    parser.add_argument("--groups", default="ab", help="which groups to run: any of a, b, c (default ab)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default 2)")
    parser.add_argument("--out", type=Path, default=common.OUT_DIR, help="output folder (default benchmarks/out)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.require_media()
    check_specs(args.methods)
    cases = (
        (group_a_cases(quick=args.quick) if "a" in args.groups else [])
        + (group_b_cases(quick=args.quick) if "b" in args.groups else [])
        + (group_c_cases(quick=args.quick) if "c" in args.groups else [])
    )
    specs = tuple(args.methods)
    began = time.perf_counter()
    print(f"{len(cases)} cases, methods {', '.join(specs)}, {args.jobs} job(s)", file=sys.stderr)
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for done, result in enumerate(pool.map(run_case, cases, [specs] * len(cases), [None if args.peers is None else tuple(args.peers)] * len(cases)), start=1):
            rows += result
            print(f"\r{done}/{len(cases)} cases, {time.perf_counter() - began:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    summary = summarise(rows)
    margin_rows = margins(summary)
    tables = summary_tables(summary, margin_rows)

    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "quality_scores.csv", rows)
    write_csv(args.out / "quality_summary.csv", summary)
    write_csv(args.out / "quality_margins.csv", margin_rows)
    report = [f"# destatic quality benchmark{' (quick)' if args.quick else ''}", ""]
    for group, table in tables.items():
        report += [f"## Group {GROUP_TITLES[group]}", "", table, ""]
    report += breakdown_tables(rows)
    (args.out / "quality.md").write_text("\n\n".join(report) + "\n")
    bar_chart(summary, args.out / "quality.png")

    for group, table in tables.items():
        print(f"\nGroup {GROUP_TITLES[group]}\n\n{table}")
    print(f"\n{len(rows)} scores in {time.perf_counter() - began:.0f} s; tables and chart in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
