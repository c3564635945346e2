"""Data flows one way: settings -> flows -> tasks -> (dsp, media); the core never imports Prefect."""

from __future__ import annotations

import subprocess
import sys


def test_core_modules_do_not_import_prefect() -> None:
    modules = ["destatic", "destatic.dsp", "destatic.media", "destatic.settings", "destatic.report", "destatic.cli"]
    code = f"import sys; import {', '.join(modules)}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_readme_settings_table_matches_the_model() -> None:
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    try:
        from settings_table import settings_table
    finally:
        sys.path.pop(0)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert settings_table() in readme, "README settings table is stale: run scripts/settings_table.py"
