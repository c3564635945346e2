"""The quality benchmark's harness: the split, the mixtures, the caches, one real pair scored and tabulated."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import quality
import result_cache


def test_parse_spec_reads_literals_and_default() -> None:
    assert quality.parse_spec("default") == (None, {})
    assert quality.parse_spec("logmmse:max_reduction_db=18,track_noise=False,noise=auto") == (
        "logmmse",
        {"max_reduction_db": 18, "track_noise": False, "noise": "auto"},
    )
    with pytest.raises(SystemExit, match="'smoothing' in 'wiener:smoothing'"):
        quality.parse_spec("wiener:smoothing")


def test_check_specs_refuses_an_unknown_option_before_the_run() -> None:
    with pytest.raises(SystemExit, match="bogus"):
        quality.check_specs(["wiener:bogus=1"])


def test_the_halves_split_every_group_and_noise_evenly_and_never_move(media_dir: Path) -> None:
    cases = quality.all_cases("abcde", quick=False)
    names = [(case.group, case.name) for case in cases]
    assert len(names) == len(set(names))
    strata = collections.Counter((case.group, case.stratum, case.half) for case in cases)
    for (group, stratum, half), count in strata.items():
        other = strata[group, stratum, "held" if half == "tune" else "tune"]
        assert abs(count - other) <= 1, (group, stratum)
    speakers = {case.speech for case in cases if case.group == "a"}
    assert len(speakers) == len(quality.speakers()) == 10
    assert {case.noise for case in cases if case.group == "a"} == set(quality.STEADY_NOISES)
    again = {(case.group, case.name): case.half for case in quality.all_cases("ad", quick=True)}
    assert all(dict(((c.group, c.name), c.half) for c in cases)[key] == half for key, half in again.items())
    assert {case.half for case in quality.all_cases("b", quick=False, halves=("held",))} == {"held"}


def test_group_a_mixtures_are_deterministic_and_start_with_noise_only(media_dir: Path) -> None:
    case = next(c for c in quality.group_a_cases() if c.corpus == "noizeus" and c.noise == "fan")
    noisy, clean, rate, bed = case.load()
    again, _, _, _ = case.load()
    np.testing.assert_array_equal(noisy, again)
    lead_in = int(quality.LEAD_IN_S * rate)
    assert bed is None and np.all(clean[:lead_in] == 0) and np.std(noisy[:lead_in]) > 0


def test_a_bed_mixture_puts_the_bed_12_db_under_the_voice_and_measures_it(media_dir: Path) -> None:
    case = next(c for c in quality.group_d_cases() if c.corpus == "voicebank" and c.bed == "piano")
    noisy, reference, rate, bed = case.load()
    start = int(quality.LEAD_IN_S * rate)
    voice = reference - bed
    assert 10 * np.log10(np.mean(bed[start:] ** 2) / np.mean(voice[start:] ** 2)) == pytest.approx(quality.BED_DB, abs=1e-6)
    noise = noisy - reference
    assert quality.bed_level_db(noisy[start:], voice[start:], bed[start:], noise[start:]) == pytest.approx(0.0, abs=1e-6)
    halved = voice + 0.5 * bed + 0.1 * noise
    assert quality.bed_level_db(halved[start:], voice[start:], bed[start:], noise[start:]) == pytest.approx(-6.02, abs=0.01)




def test_group_e_holds_the_cases_a_persistence_rule_gets_wrong_and_all_of_it_is_quick(media_dir: Path) -> None:
    from destatic.dsp.denoising import resolve_profile

    cases = quality.all_cases("e", quick=False)
    assert [c.name for c in quality.all_cases("e", quick=True)] == [c.name for c in cases]
    strata = collections.Counter((case.stratum, case.half) for case in cases)
    assert all(strata[stratum, "tune"] == strata[stratum, "held"] for stratum, _ in strata)
    by_kind = {case.kind: case for case in cases}
    assert set(by_kind) == {"louder", "louder-alone", "hum-separate", "stereo"}

    noisy, reference, rate, _ = by_kind["louder-alone"].load()
    lead_in, late = int(quality.LEAD_IN_S * rate), slice(-2 * rate, None)
    assert not reference.any()
    grown = 10 * np.log10(np.mean(noisy[late] ** 2) / np.mean(noisy[:lead_in] ** 2))
    assert grown == pytest.approx(quality.LOUDER_DB, abs=1.0)
    assert quality.noise_level_db(0.1 * noisy, reference, noisy) == pytest.approx(-20.0, abs=1e-6)

    case = by_kind["hum-separate"]
    noisy, reference, rate, _ = case.load()
    profile = resolve_profile(noisy, rate, quality.noise_argument(case))
    assert profile.tones.size and not profile.tone_amplitudes.any()
    noise = noisy - reference
    assert quality.noise_level_db(reference + 0.5 * noise, reference, noise) == pytest.approx(-6.02, abs=0.01)

    noisy, reference, rate, _ = by_kind["stereo"].load()
    noise = noisy - reference
    assert noisy.shape[1] == 2 and np.array_equal(reference[:, 0], reference[:, 1])
    assert abs(np.corrcoef(noise[:, 0], noise[:, 1])[0, 1]) < 0.1


@pytest.fixture(autouse=True)
def the_real_dfn3_stream_afterwards() -> Iterator[None]:
    """``run_case`` serves DeepFilterNet3 from its cache in this process: the tests that follow get the real stream back."""
    from destatic.dsp import learned

    real = learned.DeepFilterStream
    yield
    learned.DeepFilterStream = real

def test_one_pair_runs_every_method_and_tabulates(media_dir: Path, tmp_path: Path) -> None:
    case = next(c for c in quality.all_cases("b", quick=True) if c.corpus == "voicebank")
    rows = quality.run_case(case, ("default", "identity"), ("noisy", "seed", "afftdn", "dfn3"), tmp_path / "cache")
    by_method = {row["method"]: row for row in rows}
    assert set(by_method) == {"noisy", "seed", "afftdn", "dfn3", "destatic:default", "destatic:identity"}
    identity, noisy = by_method["destatic:identity"], by_method["noisy"]
    assert identity["pesq"] == noisy["pesq"] and identity["si_sdr"] == noisy["si_sdr"]
    assert by_method["afftdn"]["lag_samples"] > 0
    assert by_method["destatic:default"]["length_diff"] == 0 and by_method["destatic:default"]["lag_samples"] == 0
    assert not any(row["cached"] for row in rows)
    again = quality.run_case(case, ("default", "identity"), ("noisy", "seed", "afftdn", "dfn3"), tmp_path / "cache")
    assert all(row["cached"] for row in again)
    assert [row["pesq"] for row in again] == [row["pesq"] for row in rows]

    summary = quality.summarise(rows)
    targets = quality.targets(rows, summary, "destatic:default")
    identity_pesq = next(t for t in targets if t["method"] == "destatic:identity" and t["target"] == "PESQ >= dfn3")
    assert not identity_pesq["meets"]
    assert "destatic:default" in quality.summary_tables(rows, summary)["b"]
    assert "destatic:identity" in quality.targets_table(targets)
    quality.write_csv(tmp_path / "scores.csv", rows)
    earlier = quality.earlier_rows(tmp_path / "scores.csv", [case])
    assert {row["method"] for row in earlier} == {"destatic:default@earlier", "destatic:identity@earlier"}
    assert [row["pesq"] for row in earlier] == [by_method["destatic:default"]["pesq"], identity["pesq"]]
    assert {"destatic:default", "destatic:default@earlier"} <= {entry["method"] for entry in quality.summarise(rows + earlier)}
    quality.bar_chart(summary, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 10_000


def test_the_dfn3_cache_gives_the_same_samples_as_the_real_stream(media_dir: Path, tmp_path: Path) -> None:
    import destatic
    from destatic.dsp import learned

    case = next(c for c in quality.all_cases("a", quick=True) if c.corpus == "noizeus")
    noisy, _, rate, _ = case.load()
    real_stream = learned.DeepFilterStream
    direct = destatic.denoise(noisy, rate, noise=(0.0, quality.LEAD_IN_S))
    try:
        result_cache.install_dfn3_cache(tmp_path)
        computed = destatic.denoise(noisy, rate, noise=(0.0, quality.LEAD_IN_S))
        stored = destatic.denoise(noisy, rate, noise=(0.0, quality.LEAD_IN_S))
    finally:
        learned.DeepFilterStream = real_stream
    assert len(list(tmp_path.rglob("*.npy"))) == 2  # the output, and DFN3's local SNR beside it
    np.testing.assert_array_equal(computed, direct)
    np.testing.assert_array_equal(stored, direct)
