"""A request answered before, answered again from the work folder without starting Prefect. No Prefect here.

A fully cached ``destatic run`` runs no step: every artifact is in the work
folder already. Importing Prefect and making a flow run of cached tasks
takes seconds, though, so the flow remembers, in each file's work folder,
which request (the input's bytes, every setting that shapes the output, the
output's kind, the version of destatic's code) gave which finished
artifacts; the command line asks :func:`answer_again` first, which, when
every artifact is still there, delivers copies again at once. Anything else (a
changed input, setting or version, an evicted artifact) takes the flow, as
before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from destatic import __version__, cache, media, steps
from destatic._digest import file_digest
from destatic.code_version import package_version
from destatic.errors import DestaticError
from destatic.preflight import Request
from destatic.settings import Settings
from destatic.workspace import work_dir_for

__all__ = ["SHORTCUTS", "answer_again", "recall", "remember", "request_key"]

SHORTCUTS = "shortcuts.json"
"""Requests answered in a file's work folder: request key -> the artifacts delivered."""
_SHAPING = ("output", "noise", "suppression")
"""The settings groups that shape what is written (the others say where, when and how it runs)."""


def request_key(source: Path, settings: Settings, *, output: Path, residue: Path | None) -> str:
    """The request of cleaning `source` into `output` (and its residue) with `settings`, as one hex key.

    It holds the input's content, the shaping settings (any file they name,
    by content), the output's suffix (its format), whether a residue is
    asked for, and the version of destatic and of all its code (any edit of the
    code takes the flow once, whose steps' keys tell what changed).
    """
    shaping = settings.model_dump(mode="json", include=set(_SHAPING))
    shaping["output"].pop("suffix", None)  # the default name only, not the bytes
    files = {name: file_digest(Path(value)) for name in ("file", "profile_file") if (value := shaping["noise"].get(name))}
    what: dict[str, Any] = {
        "destatic": __version__,
        "code": package_version(),
        "input": file_digest(source),
        "settings": shaping,
        "files": files,
        "output": output.suffix.lower(),
        "residue": residue.suffix.lower() if residue is not None else None,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]


def _read(work_dir: Path) -> dict[str, dict[str, str | None]]:
    with contextlib.suppress(OSError, ValueError):
        known = json.loads((work_dir / SHORTCUTS).read_text(encoding="utf-8"))
        if isinstance(known, dict):
            return known
    return {}


def remember(work_dir: Path, key: str, *, encoded: Path, residue: Path | None = None) -> None:
    """Note that the request `key` was answered with these artifacts of `work_dir` (written atomically)."""
    known = _read(work_dir)
    known[key] = {"encoded": encoded.name, "residue": residue.name if residue is not None else None}
    with media.atomic_output(work_dir / SHORTCUTS) as partial:
        partial.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")


def recall(work_dir: Path, key: str) -> tuple[Path, Path | None] | None:
    """The artifacts that answered the request `key`, if it was answered and they are all still there."""
    answer = _read(work_dir).get(key)
    if not isinstance(answer, dict) or not answer.get("encoded"):
        return None
    encoded = work_dir / str(answer["encoded"])
    residue = work_dir / str(answer["residue"]) if answer.get("residue") else None
    if not encoded.is_file() or (residue is not None and not residue.is_file()):
        return None
    return encoded, residue


def answer_again(requests: Sequence[Request], settings: Settings) -> bool:
    """Deliver again what earlier runs made for exactly these requests; False (nothing delivered) unless all were answered.

    A changed input, setting or version, or an evicted artifact, is not
    answered: the flow runs. So is a request whose answer cannot be copied
    (the flow says why, or does it again).
    """
    try:
        answers = []
        for item in requests:
            answer = recall(work_dir_for(item.source, settings), request_key(item.source, settings, output=item.output, residue=item.residue))
            if answer is None:
                return False
            answers.append((answer, item))
        for (encoded, residue_encoded), item in answers:
            steps.deliver.run(steps.Encoded(encoded), item.output)
            if item.residue is not None and residue_encoded is not None:
                steps.deliver.run(steps.Encoded(residue_encoded), item.residue)
            cache.mark_used([encoded, *([residue_encoded] if residue_encoded else [])])
    except (OSError, DestaticError):
        return False
    return True
