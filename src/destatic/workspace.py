"""Where each input's files go: its work folder, its report's artifact key, its default output.

Every name is derived from the input's content (a hash of its bytes), so a
file keeps its work folder and cache wherever it is moved, and two files of
the same name never share one.
"""

from __future__ import annotations

import re
from pathlib import Path

from destatic._digest import file_digest
from destatic.settings import Settings

__all__ = ["default_output", "report_key", "slug", "work_dir_for"]


def slug(text: str, *, limit: int = 40) -> str:
    """Lowercase letters, digits and dashes only (Prefect artifact keys), at most `limit` characters."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "file"


def report_key(source: Path) -> str:
    """Prefect artifact key of a file's report: ``destatic-<name>-<digest>``."""
    return f"destatic-{slug(source.stem)}-{file_digest(source)[:8]}"


def work_dir_for(source: Path, settings: Settings) -> Path:
    """The work folder of an input: named by its stem and the hash of its bytes."""
    return settings.paths.work.resolve() / f"{slug(source.stem)}-{file_digest(source)[:12]}"


def default_output(source: Path, settings: Settings) -> Path:
    """Beside the input, stem + suffix; audio-only mode takes the format's extension."""
    extension = f".{settings.output.format or 'flac'}" if settings.output.mode == "audio" else source.suffix
    return source.with_name(f"{source.stem}{settings.output.suffix}{extension}")
