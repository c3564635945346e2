"""The quality benchmark's harness on one real pair: every method runs, is scored and tabulated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import quality


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


def test_group_a_mixtures_are_deterministic_and_start_with_noise_only(media_dir: Path) -> None:
    case = next(c for c in quality.group_a_cases(quick=True) if c.corpus == "noizeus" and c.noise == "hum")
    noisy, clean, rate = case.load()
    again, _, _ = case.load()
    np.testing.assert_array_equal(noisy, again)
    lead_in = int(quality.LEAD_IN_S * rate)
    assert np.all(clean[:lead_in] == 0) and np.std(noisy[:lead_in]) > 0


def test_one_pair_runs_every_method_and_tabulates(media_dir: Path, tmp_path: Path) -> None:
    case = next(c for c in quality.group_b_cases(quick=True) if c.corpus == "voicebank")
    rows = quality.run_case(case, ("default", "identity"))
    methods = [row["method"] for row in rows]
    assert {"noisy", "seed", "noisereduce", "afftdn", "destatic:default", "destatic:identity"} <= set(methods)
    by_method = {row["method"]: row for row in rows}
    identity, noisy = by_method["destatic:identity"], by_method["noisy"]
    assert identity["pesq"] == noisy["pesq"] and identity["si_sdr"] == noisy["si_sdr"]
    assert by_method["afftdn"]["lag_samples"] > 0
    assert by_method["destatic:default"]["length_diff"] == 0

    summary = quality.summarise(rows)
    margins = quality.margins(summary)
    assert {m["metric"] for m in margins} == set(quality.METRICS)
    identity_pesq = next(m for m in margins if m["method"] == "destatic:identity" and m["metric"] == "pesq")
    assert identity_pesq["margin"] <= 0 and not identity_pesq["meets"]
    tables = quality.summary_tables(summary, margins)
    assert "destatic:default" in tables["b"]
    quality.bar_chart(summary, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 10_000
