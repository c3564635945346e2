"""The import contract: data flows one way, cli -> flows -> tasks -> steps -> (dsp, media).

Every import in ``src/destatic`` is read from the source (those inside
functions too), so a lazy import cannot slip past. The rules:

- the DSP core and the media layer import neither Prefect nor each other,
  nor anything above them;
- the steps, the inbox queue (on a folder or object storage, and its notifications), the settings, the workspace and the cache (its
  keys name the steps' artifacts, and ``destatic run`` uses them before it
  loads Prefect) import no Prefect;
- tasks do not import flows; nothing imports the command line.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "destatic"

ABOVE_THE_CORE = (
    "destatic.steps",
    "destatic.tasks",
    "destatic.flows",
    "destatic.inbox",
    "destatic.store",
    "destatic.notify",
    "destatic.cli",
    "destatic.settings",
    "destatic.workspace",
    "destatic.runners",
    "destatic._dask",
)
RULES: dict[str, tuple[str, ...]] = {
    "destatic.dsp": ("prefect", "prefect_dask", "destatic.media", "soundfile", "pydantic", *ABOVE_THE_CORE),
    "destatic.media": ("prefect", "prefect_dask", "destatic.dsp", *ABOVE_THE_CORE),
    "destatic.errors": ("prefect", "destatic.dsp", "destatic.media", *ABOVE_THE_CORE),
    "destatic._cpus": ("prefect", "destatic.dsp", "destatic.media", *ABOVE_THE_CORE),
    "destatic._digest": ("prefect", "destatic.dsp", "destatic.media", *ABOVE_THE_CORE),
    "destatic._interrupts": ("prefect", "destatic.dsp", "destatic.media", *ABOVE_THE_CORE),
    "destatic.cache": ("prefect", "destatic.dsp", "destatic.media", *ABOVE_THE_CORE),
    "destatic.settings": ("prefect", "destatic.steps", "destatic.tasks", "destatic.flows", "destatic.inbox", "destatic.cli", "destatic.runners"),
    "destatic.workspace": ("prefect", "destatic.steps", "destatic.tasks", "destatic.flows", "destatic.inbox", "destatic.cli"),
    "destatic.steps": ("prefect", "prefect_dask", "destatic.tasks", "destatic.flows", "destatic.inbox", "destatic.cli", "destatic.runners"),
    "destatic.inbox": ("prefect", "prefect_dask", "destatic.steps", "destatic.tasks", "destatic.flows", "destatic.cli", "destatic.runners"),
    "destatic.store": ("prefect", "prefect_dask", "destatic.steps", "destatic.tasks", "destatic.flows", "destatic.cli", "destatic.runners"),
    "destatic.notify": ("prefect", "prefect_dask", "destatic.steps", "destatic.tasks", "destatic.flows", "destatic.cli", "destatic.runners"),
    "destatic.tasks": ("destatic.flows", "destatic.cli"),
    "destatic.runners": ("destatic.flows", "destatic.cli", "destatic.tasks"),
    "destatic.flows": ("destatic.cli",),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(module: str, source: str, *, is_package: bool = False) -> set[str]:
    """Every module `source` (the code of `module`) imports, anywhere in it, as absolute names."""
    found = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def violations(module: str, source: str, *, is_package: bool = False) -> list[str]:
    """The imports of `module` that the contract forbids, as ``module -> imported`` lines."""
    forbidden = [banned for layer, banned in RULES.items() if module == layer or module.startswith(layer + ".")]
    if module != "destatic.__main__" and not (module == "destatic.cli" or module.startswith("destatic.cli.")):
        forbidden.append(("destatic.cli",))
    bad = []
    for imported in sorted(imported_modules(module, source, is_package=is_package)):
        for banned in (name for group in forbidden for name in group):
            if imported == banned or imported.startswith(banned + "."):
                bad.append(f"{module} -> {imported}")
    return sorted(set(bad))


def test_the_import_contract_holds() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += violations(_module_name(path), path.read_text(encoding="utf-8"), is_package=path.name == "__init__.py")
    assert found == []


def test_the_contract_catches_a_forbidden_import() -> None:
    """The check itself: a Prefect import inside a DSP function, a DSP import in media, a cli import anywhere."""
    stft = (PACKAGE / "dsp" / "stft.py").read_text(encoding="utf-8")
    assert violations("destatic.dsp.stft", stft) == []
    assert violations("destatic.dsp.stft", stft + "\ndef later():\n    from prefect import flow\n") == [
        "destatic.dsp.stft -> prefect",
        "destatic.dsp.stft -> prefect.flow",
    ]
    assert violations("destatic.media.probe", "from destatic import dsp\n") == ["destatic.media.probe -> destatic.dsp"]
    assert violations("destatic.media.probe", "from ..dsp import stft\n") == [
        "destatic.media.probe -> destatic.dsp",
        "destatic.media.probe -> destatic.dsp.stft",
    ]
    assert violations("destatic.steps.extract", "import prefect.artifacts\n") == ["destatic.steps.extract -> prefect.artifacts"]
    assert violations("destatic.tasks", "from destatic.flows import denoise_file\n") == [
        "destatic.tasks -> destatic.flows",
        "destatic.tasks -> destatic.flows.denoise_file",
    ]
    assert violations("destatic.flows.watch", "import destatic.cli\n") == ["destatic.flows.watch -> destatic.cli"]


def test_the_layers_below_the_flows_load_no_prefect() -> None:
    """At run time too: importing them (and the command line, which loads Prefect only in its commands) loads no Prefect."""
    modules = ["destatic", "destatic.dsp", "destatic.media", "destatic.settings", "destatic.steps", "destatic.inbox", "destatic.workspace", "destatic.cli"]
    code = f"import sys; import {', '.join(modules)}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING" or (
        isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"
    )


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Which of the package's modules each of its modules imports when it runs: at the top or inside a function.

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a
    module, else ``pkg``; imports under ``if TYPE_CHECKING:`` never run and do not count.
    """
    files = {".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__"): path for path in sorted(package.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node) for child in node.body for inner in ast.walk(child)}
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = (module if path.name == "__init__.py" else module.rpartition(".")[0]).split(".")
                    base = ".".join([*anchor[: len(anchor) - node.level + 1], *([base] if base else [])])
                found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names)
        graph[module] = (found & set(files)) - {module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle of `graph` that a depth-first search meets, each as the modules along it (first repeated last)."""
    cycles, state, path = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                cycles.append(path[path.index(imported):] + [imported])
            elif imported not in state:
                visit(imported)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


def test_the_package_has_no_import_cycle() -> None:
    """No module needs, even inside a function, a module that needs it back: each layer can be read (and loaded) on its own."""
    assert import_cycles(import_graph()) == []


def test_the_cycle_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    """The check itself: a cycle closed by a lazy import (as ``dsp.gains.rule_for`` once imported ``dsp.learned``)."""
    package = tmp_path / "destatic"
    (package / "dsp").mkdir(parents=True)
    for name in ("__init__.py", "dsp/__init__.py"):
        (package / name).write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from destatic.dsp import gains\n")
    (package / "dsp" / "learned.py").write_text("from destatic.dsp.gains import GainComputer\n")
    (package / "dsp" / "gains.py").write_text("class GainComputer: ...\n")
    assert import_cycles(import_graph(package)) == []
    (package / "dsp" / "gains.py").write_text("def rule_for():\n    from destatic.dsp.learned import LearnedGainComputer\n")
    assert import_cycles(import_graph(package)) == [["destatic.dsp.gains", "destatic.dsp.learned", "destatic.dsp.gains"]]


MAX_MODULE_LINES = 600
MAX_FLOW_FUNCTION_LINES = 60
FILESYSTEM_MODULES = ("os", "shutil", "tempfile", "soundfile", "glob")
FILESYSTEM_CALLS = {"open", "mkdir", "unlink", "rename", "replace", "rmdir", "rmtree", "write_text", "write_bytes", "read_text", "read_bytes", "iterdir", "glob", "rglob", "touch"}


def _code_lines(function: ast.FunctionDef) -> int:
    """Lines of a function from its signature to its end, its docstring left out."""
    body = function.body
    has_docstring = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str)
    docstring = body[0].end_lineno - body[0].lineno + 1 if has_docstring else 0
    return function.end_lineno - function.lineno + 1 - docstring


def test_modules_stay_small() -> None:
    long = {str(path.relative_to(PACKAGE)): lines for path in PACKAGE.rglob("*.py") if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_flows_only_order_calls() -> None:
    """The flows hold no long functions and no filesystem logic: that lives in the steps and the inbox."""
    problems = []
    for path in sorted((PACKAGE / "flows").glob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for imported in imported_modules(module, path.read_text(encoding="utf-8"), is_package=path.name == "__init__.py"):
            if imported.split(".")[0] in FILESYSTEM_MODULES:
                problems.append(f"{module} imports {imported}")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and (lines := _code_lines(node)) > MAX_FLOW_FUNCTION_LINES:
                problems.append(f"{module}.{node.name} has {lines} lines of code")
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in FILESYSTEM_CALLS:
                    problems.append(f"{module} line {node.lineno} calls {name}")
    assert problems == []
