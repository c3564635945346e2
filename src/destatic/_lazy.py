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
_LINE = re.compile(r"\n([ \t]*)(import|from|if)[ \t].*")
_TRIPLE_QUOTED = re.compile(r'""".*?"""|\'\'\'.*?\'\'\'', re.DOTALL)
_ALIAS = re.compile(r"([\w.]+)(?:\s+as\s+(\w+))?")


def import_statements(text: str) -> Iterator[tuple[str, bool]]:
    """Every import statement of `text`, on one line, and whether it is under ``if TYPE_CHECKING:``.

    A scan, not a parse (parsing every module costs a tenth of a second):
    triple-quoted strings are blanked first, then the lines that start with
    ``import``, ``from`` or ``if TYPE_CHECKING:`` are found by one pattern,
    and a guard's block ends at the first line indented no deeper.
    """
    text = "\n" + _TRIPLE_QUOTED.sub(lambda quoted: "\n" * quoted[0].count("\n"), text)
    guard: tuple[int, int] | None = None  # the indentation and the end offset of the ``if TYPE_CHECKING:`` block
    for found in _LINE.finditer(text):
        indent, keyword = len(found[1]), found[2]
        if guard is not None and found.start() >= guard[1]:
            guard = None
        if keyword == "if":
            if _GUARD.match(text, found.start(2)):
                end = _DEDENT[indent].search(text, found.end()) if indent in _DEDENT else _dedent(indent).search(text, found.end())
                guard = (indent, end.start() if end is not None else len(text))
            continue
        statement, end = found[0].strip(), found.end()
        while end < len(text) and (statement.endswith("\\") or statement.count("(") > statement.count(")")):
            line_end = text.find("\n", end + 1)
            line_end = len(text) if line_end < 0 else line_end
            statement = statement.rstrip("\\") + " " + text[end + 1 : line_end].strip()
            end = line_end
        yield statement, guard is not None


_DEDENT: dict[int, re.Pattern[str]] = {}


def _dedent(indent: int) -> re.Pattern[str]:
    """A line with code indented `indent` characters or less (the end of a block opened at `indent`)."""
    _DEDENT[indent] = re.compile(rf"\n[ \t]{{0,{indent}}}(?=[^ \t\n#])")
    return _DEDENT[indent]


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
