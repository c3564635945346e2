"""The README keeps up with the code: its settings table is the Settings model's."""

from __future__ import annotations

import sys


def test_readme_settings_table_matches_the_model() -> None:
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    try:
        from settings_table import settings_table
    finally:
        sys.path.pop(0)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert settings_table() in readme, "README settings table is stale: run scripts/settings_table.py"
