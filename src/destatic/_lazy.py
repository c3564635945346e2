"""Packages whose names are imported on first use, so that a command that needs little loads little (PEP 562).

A package lists its public names once, as the imports of an
``if TYPE_CHECKING:`` block (what type checkers and editors read):
:func:`lazy_package` reads that block from the package's source and makes
the package's ``__getattr__`` (each name imported from its module when first
asked for), ``__dir__`` and ``__all__`` from it.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["import_statements", "imported", "lazy_names", "lazy_package"]

_FROM = re.compile(r"from\s+(\.*[\w.]*)\s+import\s+(.*)", re.DOTALL)
_GUARD = re.compile(r"if\s+(?:typing\.)?TYPE_CHECKING\s*:")
_ALIAS = re.compile(r"([\w.]+)(?:\s+as\s+(\w+))?")


def import_statements(text: str) -> Iterator[tuple[str, bool]]:
    """Every import statement of `text`, on one line, and whether it is under ``if TYPE_CHECKING:``.

    A line scan, not a parse (parsing every module costs a tenth of a
    second); the lines of triple-quoted strings are skipped.
    """
    lines = text.splitlines()
    guard: int | None = None  # the indentation of the ``if TYPE_CHECKING:`` whose block this is
    quoted = False  # inside a triple-quoted string (a docstring)
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        statement = line.lstrip()
        was_quoted = quoted
        quoted ^= (line.count('"""') + line.count("'''")) % 2 == 1
        if was_quoted or not statement or statement.startswith("#"):
            continue
        indent = len(line) - len(statement)
        if guard is not None and indent <= guard:
            guard = None
        if _GUARD.match(statement):
            guard = indent
        elif statement.startswith(("import ", "from ")):
            while index < len(lines) and (statement.rstrip().endswith("\\") or statement.count("(") > statement.count(")")):
                statement = statement.rstrip().rstrip("\\") + " " + lines[index].strip()
                index += 1
            yield statement, guard is not None


def imported(statement: str) -> Iterator[tuple[str, str, str | None]]:
    """What one import statement binds: (local name, module as written, name taken from it or None for ``import module``)."""
    found = _FROM.fullmatch(statement)
    if found is not None:
        for alias in _ALIAS.finditer(re.sub(r"#.*", "", found[2]).replace("(", " ").replace(")", " ")):
            yield alias[2] or alias[1], found[1], alias[1]
    else:
        for alias in _ALIAS.finditer(re.sub(r"#.*", "", statement[len("import "):])):
            yield alias[2] or alias[1].partition(".")[0], alias[1], None


def lazy_names(
    package: str, names: Mapping[str, str], submodules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` that import ``names[name]`` (a module) when ``name`` is first asked for.

    A name that is not listed may be a submodule, imported the same way;
    ``__dir__`` lists `submodules` before they are imported.
    """
    listed = {*names, *submodules}

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = names.get(name)
        if module is None:
            try:
                value: Any = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as error:
                if error.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        else:
            value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*sys.modules[package].__dict__, *listed})

    return __getattr__, __dir__


def lazy_package(package: str) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """The ``__getattr__``, ``__dir__`` and ``__all__`` of `package`, from its ``if TYPE_CHECKING:`` imports.

    Call it at the top of the package's ``__init__``. A name imported there
    from the package itself (``from pkg import submodule``) is a submodule;
    any other is loaded from the module it is imported from. The names the
    ``__init__`` imports from destatic at run time (loaded at once) are public
    too.
    """
    source = Path(sys.modules[package].__file__ or "").read_text(encoding="utf-8")
    names: dict[str, str] = {}
    public: set[str] = set()
    root = package.partition(".")[0]
    for statement, typing in import_statements(source):
        for local, module, name in imported(statement):
            if name is None or not (module == root or module.startswith(f"{root}.")) or module == __name__:
                continue
            public.add(local)
            if typing and module != package:
                names[local] = module
    getattr_, dir_ = lazy_names(package, names, public)
    return getattr_, dir_, sorted(public)
