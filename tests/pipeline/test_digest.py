"""Content hashes: right, remembered per file version, computed once when asked from two threads."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from destatic import _digest
from destatic.errors import BadInputError


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every hash actually computed (slowed down, so that a second caller arrives while it runs)."""
    calls: list[str] = []
    real = hashlib.file_digest

    def slow(handle, name):
        calls.append(handle.name)
        time.sleep(0.2)
        return real(handle, name)

    monkeypatch.setattr(_digest.hashlib, "file_digest", slow)
    monkeypatch.setattr(_digest, "_digests", {})
    return calls


def test_digest_is_sha256_and_remembered_until_the_file_changes(tmp_path: Path, counted: list[str]) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 100_000)
    assert _digest.file_digest(path) == hashlib.sha256(b"x" * 100_000).hexdigest()
    assert _digest.file_digest(path) == hashlib.sha256(b"x" * 100_000).hexdigest()
    assert len(counted) == 1
    path.write_bytes(b"y" * 100_000)
    os.utime(path, ns=(1, 1))
    assert _digest.file_digest(path) == hashlib.sha256(b"y" * 100_000).hexdigest()
    assert len(counted) == 2


def test_a_prefetch_under_way_is_waited_for_not_repeated(tmp_path: Path, counted: list[str]) -> None:
    paths = [tmp_path / f"{name}.bin" for name in ("a", "b")]
    for index, path in enumerate(paths):
        path.write_bytes(bytes([index]) * 50_000)
    prefetching = _digest.prefetch(paths)
    time.sleep(0.05)  # the first hash is under way
    results = {}
    threads = [threading.Thread(target=lambda p=p: results.__setitem__(p, _digest.file_digest(p))) for p in paths]
    for thread in threads:
        thread.start()
    for thread in [*threads, prefetching]:
        thread.join()
    assert sorted(counted) == sorted(str(path) for path in paths)
    assert results == {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


def test_prefetch_leaves_bad_files_to_the_real_call(tmp_path: Path, counted: list[str]) -> None:
    missing, folder = tmp_path / "missing.mp4", tmp_path / "folder"
    folder.mkdir()
    _digest.prefetch([missing, folder]).join()
    with pytest.raises(BadInputError, match="missing.mp4.*cannot be read"):
        _digest.file_digest(missing)
    with pytest.raises(BadInputError, match="is not a regular file"):
        _digest.file_digest(folder)
    assert counted == [] and _digest._hashing == {}
