"""Each package's public names are written once, in its ``if TYPE_CHECKING:`` block, and its ``__all__``, ``dir()``
and attributes agree with what a type checker reads there."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = ("destatic", "destatic.dsp", "destatic.media", "destatic.steps")


def _static_names(package: str) -> dict[str, tuple[str, str]]:
    """What a type checker reads in `package`'s ``__init__``: each name imported from destatic, with (module, name there)."""
    path = Path(importlib.import_module(package).__file__ or "")
    found: dict[str, tuple[str, str]] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("destatic") and node.module != "destatic._lazy":
            for alias in node.names:
                found[alias.asname or alias.name] = (node.module or "", alias.name)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_all_dir_and_the_attributes_are_what_the_type_checking_block_names(package: str) -> None:
    module = importlib.import_module(package)
    static = _static_names(package)
    assert sorted(module.__all__) == sorted(static) == module.__all__
    assert set(module.__all__) <= set(dir(module))
    for name, (origin, attribute) in static.items():
        expected = importlib.import_module(f"{origin}.{attribute}") if origin == package else getattr(importlib.import_module(origin), attribute)
        assert getattr(module, name) is expected, f"{package}.{name}"


def test_a_package_loads_its_names_only_when_asked() -> None:
    """``import destatic.steps`` and ``destatic.media`` load neither the DSP core nor any step."""
    code = (
        "import sys, destatic, destatic.steps, destatic.media\n"
        "assert 'numpy' not in sys.modules, 'numpy'\n"
        "assert not [m for m in sys.modules if m.startswith('destatic.steps.')], 'a step'\n"
        "destatic.steps.Plots\n"
        "assert 'destatic.steps.records' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
