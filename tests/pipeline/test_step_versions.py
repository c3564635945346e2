"""Step versions come from the code: an edit of a step, or of a module only it uses, changes its key and no other's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import destatic
from destatic import cache, code_version

PACKAGE = Path(destatic.__file__).parent
_VERSIONS = """
import json, sys
sys.path.insert(0, sys.argv[1])
import destatic
from destatic import cache
assert destatic.__file__.startswith(sys.argv[1]), destatic.__file__
print(json.dumps({step: cache.step_version(step) for step in cache.STEP_MODULES}))
"""


def _versions(root: Path) -> dict[str, str]:
    """Every step's version, worked out in a fresh process that imports destatic from `root`."""
    done = subprocess.run([sys.executable, "-c", _VERSIONS, str(root)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of destatic's source (no bytecode), importable from the returned folder."""
    shutil.copytree(PACKAGE, tmp_path / "destatic", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {step for step in before if before[step] != after[step]}


def test_editing_a_step_changes_its_key_and_no_other(package_copy: Path) -> None:
    before = _versions(package_copy)
    assert before == _versions(package_copy), "the same code, the same versions"
    _append(package_copy / "destatic" / "steps" / "remux.py", "\nEDITED = 1\n")
    assert _changed(before, _versions(package_copy)) == {"remux"}


def test_editing_a_dsp_module_changes_the_keys_of_the_steps_importing_it(package_copy: Path) -> None:
    """dsp.subtract is imported by the subtract step only; dsp.stft by every step that runs the DSP."""
    before = _versions(package_copy)
    _append(package_copy / "destatic" / "dsp" / "subtract.py", "\nEDITED = 1\n")
    after = _versions(package_copy)
    assert _changed(before, after) == {"subtract"}
    _append(package_copy / "destatic" / "dsp" / "stft.py", "\nEDITED = 1\n")
    assert _changed(after, _versions(package_copy)) == {"profile", "subtract", "inverse", "plots"}


def test_an_import_inside_a_function_and_a_lazy_name_count(package_copy: Path) -> None:
    """The export step, made to call ``dsp.find_hum`` from an import inside a function, then depends on dsp.profile."""
    export = package_copy / "destatic" / "steps" / "export.py"
    _append(export, "\n\ndef _hum(audio, rate):\n    from destatic import dsp\n\n    return dsp.find_hum(audio, rate)\n")
    before = _versions(package_copy)
    _append(package_copy / "destatic" / "dsp" / "profile.py", "\nEDITED = 1\n")
    changed = _changed(before, _versions(package_copy))
    assert "export" in changed
    assert "remux" not in changed and "extract" not in changed


def test_annotations_only_and_docstrings_are_not_dependencies() -> None:
    """records.py names the DSP only under TYPE_CHECKING; a docstring's ``import`` line is text."""
    assert not any(name.startswith("destatic.dsp") for name in code_version.closure("destatic.steps.records"))
    assert code_version.closure("destatic.code_version") == {"destatic.code_version", "destatic", "destatic._lazy"}


def test_the_cache_knows_every_step_the_tasks_key() -> None:
    """Every step key the tasks ask for has a module, hence a version, and a name the cache's pruning reads."""
    from destatic import tasks

    policies = [value for value in vars(tasks).values() if isinstance(value, tasks.StepCache)]
    assert {policy.step for policy in policies} == set(cache.STEP_MODULES)
    for step in cache.STEP_MODULES:
        assert len(cache.step_version(step)) == code_version.VERSION_CHARS
        assert cache._ARTIFACT.match(cache.artifact_name(step, "0" * cache.KEY_CHARS, ".wav"))
