"""Seeded byte mutations of the real media files through probe + extract_audio.

Each mutation flips, overwrites, inserts, deletes or cuts bytes of a copy of a
file from ``../shared/media``. The media layer must then either work (a WAV
with samples) or raise :class:`~destatic.errors.BadInputError`; any other
exception is a crash. Inputs are never modified and a failure leaves no file.
The default run tries 100 mutations; the slow one 1500.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from destatic import media
from destatic.errors import BadInputError

FILES = (
    "video/chaplin.mp4",
    "video/creative_common.mp4",
    "video/bbaf2n.mpg",
    "video/big_buck_bunny_0_30.webm",
    "speech/sp01.wav",
    "speech/198-209-0000.decoded.flac",
    "pairs/noizeus/sp01_car_sn5.wav",
)
SEED = 20261123

Mutation = Callable[[bytes, np.random.Generator], tuple[bytes, str]]


def _flip(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    out = bytearray(data)
    count = int(rng.integers(1, 33))
    for at in rng.integers(0, len(out), count):
        out[at] ^= 1 << int(rng.integers(0, 8))
    return bytes(out), f"flip {count} bits"


def _header(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    out = bytearray(data)
    start = int(rng.integers(0, min(len(out), 4096)))
    length = int(rng.integers(1, 65))
    out[start : start + length] = rng.bytes(length)[: len(out[start : start + length])]
    return bytes(out), f"overwrite {length} header bytes at {start}"


def _insert(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    at, length = int(rng.integers(0, len(data))), int(rng.integers(1, 4097))
    return data[:at] + rng.bytes(length) + data[at:], f"insert {length} bytes at {at}"


def _delete(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    at, length = int(rng.integers(0, len(data))), int(rng.integers(1, 4097))
    return data[:at] + data[at + length :], f"delete {length} bytes at {at}"


def _truncate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    at = int(rng.integers(0, len(data)))
    return data[:at], f"truncate at {at} of {len(data)}"


def _duplicate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    at, length = int(rng.integers(0, len(data))), int(rng.integers(1, 8193))
    return data[: at + length] + data[at : at + length] + data[at + length :], f"repeat {length} bytes at {at}"


MUTATIONS: tuple[Mutation, ...] = (_flip, _header, _insert, _delete, _truncate, _duplicate)


@dataclass(frozen=True)
class Trial:
    index: int
    source: str
    what: str
    outcome: str


def mutation_run(scratch: Path, media_dir: Path, *, count: int, seed: int = SEED) -> list[Trial]:
    """Run `count` seeded mutations of files in `media_dir` through probe + extract; one trial per mutation."""
    rng = np.random.default_rng(seed)
    originals = {name: (media_dir / name).read_bytes() for name in FILES}
    trials = []
    for index in range(count):
        name = FILES[index % len(FILES)]
        mutate = MUTATIONS[int(rng.integers(0, len(MUTATIONS)))]
        data, what = mutate(originals[name], rng)
        folder = scratch / f"{index:05d}"
        folder.mkdir()
        source = folder / f"-mutant {index}{Path(name).suffix}"
        source.write_bytes(data)
        out = folder / "out"
        out.mkdir()
        try:
            media.probe(source)
            track = media.extract_audio(source, out / "audio.wav")
            outcome = "worked" if track.frames > 0 and track.path.is_file() else f"empty result: {track}"
        except BadInputError as error:
            outcome = "bad input" if "\n" not in str(error) else f"multi-line message: {error!r}"
            if list(out.iterdir()):
                outcome = f"left files after BadInputError: {[p.name for p in out.iterdir()]}"
        except Exception as error:  # the finding: anything but the documented error
            outcome = f"CRASH {type(error).__name__}: {error}"
        if hashlib.sha256(source.read_bytes()).digest() != hashlib.sha256(data).digest():
            outcome = "input modified"
        trials.append(Trial(index, name, what, outcome))
        for path in sorted(folder.rglob("*"), reverse=True):
            path.unlink() if not path.is_dir() else path.rmdir()
        folder.rmdir()
    return trials


def _check(trials: list[Trial]) -> None:
    problems = [t for t in trials if t.outcome not in ("worked", "bad input")]
    assert problems == [], "\n".join(f"#{t.index} {t.source} ({t.what}): {t.outcome}" for t in problems)
    assert {t.outcome for t in trials} == {"worked", "bad input"}, "mutations never (or always) broke a file"


def _present(media_dir: Path) -> Path:
    missing = [name for name in FILES if not (media_dir / name).is_file()]
    if missing:
        pytest.skip(f"shared media files absent from {media_dir}: {missing}")
    return media_dir


def test_hundred_mutations_only_bad_input_errors(tmp_path: Path, media_dir: Path) -> None:
    _check(mutation_run(tmp_path, _present(media_dir), count=100))


@pytest.mark.slow
def test_many_mutations_only_bad_input_errors(tmp_path: Path, media_dir: Path) -> None:
    _check(mutation_run(tmp_path, _present(media_dir), count=1500, seed=SEED + 1))
