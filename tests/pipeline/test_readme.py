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


def test_readme_command_list_shows_every_command_and_only_those() -> None:
    import re
    from pathlib import Path

    import typer

    from destatic.cli import app

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The command line", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    listed = {match for match in re.findall(r"^destatic ([a-z-]+)", section, flags=re.MULTILINE)}
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert listed == commands, f"README's command list: missing {sorted(commands - listed)}, not commands {sorted(listed - commands)}"
