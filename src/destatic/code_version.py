"""The version of a module's code: a digest of its source and of every destatic module it imports. No Prefect here.

A step's cache key holds the version of its module (:func:`version_of`), so
that editing a step, or any module of destatic it imports (at the top, inside
a function, or through a package's lazy names), makes new keys: there is no
version to bump by hand. The imports are read from the source files with
:mod:`ast` (nothing is imported to find them), once per process and only when
a key is first asked for.

What a module depends on: its parent packages (importing it runs them), the
modules it imports, and, for a name it takes from a package (``from destatic
import dsp`` then ``dsp.denoise``), the module that package loads that name
from (the package's ``if TYPE_CHECKING:`` block, see :mod:`destatic._lazy`).
Imports under ``if TYPE_CHECKING:`` elsewhere are annotations only and do not
count.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from destatic._lazy import import_statements, imported

__all__ = ["VERSION_CHARS", "closure", "lazy_exports", "package_version", "version_of"]

VERSION_CHARS = 16
"""Hex digits of a module's version."""
_ROOT = Path(__file__).resolve().parent
_PACKAGE = _ROOT.name


@functools.cache
def _modules() -> dict[str, Path]:
    """Every module of destatic by its name, with its source file (one walk of the package's folder)."""
    found = {}
    for path in _ROOT.rglob("*.py"):
        parts = path.relative_to(_ROOT).with_suffix("").parts
        found[".".join((_PACKAGE, *parts[: -1 if parts[-1] == "__init__" else None]))] = path
    return found


def _file_of(module: str) -> Path | None:
    """The source file of one of destatic's modules (None for any other module)."""
    return _modules().get(module)


_CHAIN = re.compile(r"(?<![\w.])(\w+)((?:\.\w+)+)")


def _absolute(module: str, origin: str) -> str:
    """`origin` as written in `module` (``from .x import``), its leading dots resolved."""
    level = len(origin) - len(origin.lstrip("."))
    if not level:
        return origin
    path = _file_of(module)
    package = module if path is not None and path.name == "__init__.py" else module.rpartition(".")[0]
    base = package.rsplit(".", level - 1)[0] if level > 1 else package
    return f"{base}.{origin[level:]}" if origin[level:] else base


def _imports(module: str, statements: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """Every import of `statements` (in `module`) as (local name, module or ``module.name`` it binds, module it loads)."""
    for statement in statements:
        for local, written, name in imported(statement):
            origin = _absolute(module, written)
            if name is not None:
                yield local, f"{origin}.{name}", origin
            else:
                yield local, origin.partition(".")[0] if local == origin.partition(".")[0] else origin, origin


@dataclass(frozen=True)
class _Source:
    """What one module's file says: its bytes, the modules it imports and the names it binds to them.

    Imports under ``if TYPE_CHECKING:`` are apart: annotations only in a
    module, the lazily loaded names in a package (:mod:`destatic._lazy`).
    """

    data: bytes
    text: str
    imports: tuple[tuple[str, str, str], ...]
    typing_imports: tuple[tuple[str, str, str], ...]


@functools.cache
def _source(module: str) -> _Source:
    path = _file_of(module)
    assert path is not None, module
    data = path.read_bytes()
    text = data.decode()
    statements = list(import_statements(text))
    return _Source(
        data,
        text,
        tuple(_imports(module, (statement for statement, typing in statements if not typing))),
        tuple(_imports(module, (statement for statement, typing in statements if typing))),
    )


@functools.cache
def lazy_exports(package: str) -> dict[str, str]:
    """The names a package of destatic loads on first use, each with the module it comes from (its ``if TYPE_CHECKING:`` imports).

    A name that is a submodule maps to that submodule.
    """
    path = _file_of(package)
    if path is None or path.name != "__init__.py":
        return {}
    return {local: name if _file_of(name) is not None else origin for local, name, origin in _source(package).typing_imports}


def _resolve(name: str) -> str | None:
    """The module of destatic that `name` (a module, or ``package.attribute``) loads, or None."""
    if _file_of(name) is not None:
        return name
    package, _, attribute = name.rpartition(".")
    return lazy_exports(package).get(attribute) if package else None


@functools.cache
def _needs(module: str) -> frozenset[str]:
    """The modules of destatic that `module` runs when it is imported and used."""
    source = _source(module)
    needed = {module.rsplit(".", depth)[0] for depth in range(1, module.count(".") + 1)}
    packages: dict[str, str] = {}
    for local, name, origin in source.imports:
        needed.update(found for found in (_resolve(origin), _resolve(name)) if found is not None)
        target = _resolve(name)
        if target is not None and lazy_exports(target):
            packages[local] = target
    for local, chain in _CHAIN.findall(source.text) if packages else ():  # what is read of a package
        current = packages.get(local)
        for attribute in chain.split(".")[1:]:
            if current is None:
                break
            current = _resolve(f"{current}.{attribute}")
            if current is not None:
                needed.add(current)
    needed.discard(module)
    return frozenset(needed)


@functools.cache
def closure(module: str) -> frozenset[str]:
    """`module` and every module of destatic it depends on, directly or not."""
    seen = {module}
    waiting = [module]
    while waiting:
        for found in _needs(waiting.pop()):
            if found not in seen:
                seen.add(found)
                waiting.append(found)
    return frozenset(seen)


def _digest_of(sources: Iterable[tuple[str, bytes]]) -> str:
    """SHA-256 of (module name, source) pairs, in the order of their names."""
    digest = hashlib.sha256()
    for name, data in sorted(sources):
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:VERSION_CHARS]


@functools.cache
def version_of(module: str) -> str:
    """The version of `module`'s code: SHA-256 of the source of its :func:`closure`, :data:`VERSION_CHARS` hex digits."""
    return _digest_of((name, _source(name).data) for name in closure(module))


@functools.cache
def package_version() -> str:
    """The version of all of destatic's code: SHA-256 of every module's source, :data:`VERSION_CHARS` hex digits.

    For what depends on more than one step (a whole request answered, see
    :mod:`destatic.shortcut`); a few milliseconds, as no import is read.
    """
    return _digest_of((name, path.read_bytes()) for name, path in _modules().items())
