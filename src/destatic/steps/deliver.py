"""Deliver: the finished output copied from the work folder to where the user asked for it."""

from __future__ import annotations

import shutil
from pathlib import Path

from destatic import media
from destatic.steps.records import Encoded

__all__ = ["run"]


def run(encoded: Encoded, output: Path) -> Path:
    """Copy `encoded` to `output` atomically; return `output`.

    A copy, not a link: editing the delivered file must not corrupt the cache.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    with media.atomic_output(output) as partial:
        shutil.copyfile(encoded.path, partial)
    return output
