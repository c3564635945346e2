"""Fixtures of the reliability tests: the pipeline tests' Prefect harness, reused as is."""

from __future__ import annotations

from pipeline.conftest import denoise_runs, prefect_harness  # noqa: F401  (fixtures, re-exported for this folder)
