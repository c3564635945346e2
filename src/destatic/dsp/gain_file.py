"""The gains file: every gain of a stream in one ``.npy``, stored channels-major.

Shape ``(channels, frames, bins)``, float16 or float32 (:func:`~destatic.dsp.gain_dtype`).
Channels-major so that each channel thread of the subtract step writes its
own channels' rows in place (``pwrite`` at their offsets, no memory map) and
each of the inverse step reads back only its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from destatic.errors import InternalError

__all__ = ["GainFileWriter", "as_stored", "read_gain_rows"]

FRAMES_PER_CHUNK = 256


class GainFileWriter:
    """Lay out a gains file in an open, empty binary file and write channel rows into it.

    Parameters
    ----------
    handle : binary file
        Opened for writing (``"w+b"``). The header is written and the file
        sized at once (sparse), before any channel thread starts: the threads
        write through its descriptor.
    shape : tuple of int
        ``(channels, frames, bins)``.
    dtype : np.dtype
        float16 or float32.
    """

    def __init__(self, handle: BinaryIO, shape: tuple[int, int, int], dtype: np.dtype):
        self.shape = tuple(int(size) for size in shape)
        self.dtype = np.dtype(dtype)
        channels, frames, bins = self.shape
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_1_0(handle, header)
        self._data_start = handle.tell()
        self._row_bytes = bins * self.dtype.itemsize
        handle.truncate(self._data_start + channels * frames * self._row_bytes)
        handle.flush()
        self._fd = handle.fileno()

    def store(self, group: slice, first_frame: int, gains: np.ndarray) -> None:
        """Write the gains of the channels ``group``, shape ``(group size, frames, bins)``, from ``first_frame`` on."""
        frames = self.shape[1]
        for row, channel in enumerate(range(group.start, group.stop)):
            offset = self._data_start + (channel * frames + first_frame) * self._row_bytes
            _write_at(self._fd, as_stored(gains[row], self.dtype), offset)


def as_stored(gains: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``gains`` as a contiguous array of ``dtype``: float32 to float16 by a compiled loop (numpy's cast is 40x slower), rounded alike."""
    if np.dtype(dtype) != np.float16 or gains.dtype != np.float32:
        return np.ascontiguousarray(gains, dtype)
    from destatic.dsp import _numba  # noqa: PLC0415  (numba loads on first use, not on import)

    halves = np.empty(gains.shape, np.uint16)
    _numba.halves_into(np.ascontiguousarray(gains).reshape(-1), halves.reshape(-1))
    return halves.view(np.float16)


def _write_at(fd: int, data: np.ndarray, offset: int) -> None:
    """Write all of `data` at `offset` of the open file `fd` (its position is not used or moved)."""
    view = memoryview(data).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def read_gain_rows(path: os.PathLike[str] | str, group: slice, *, frames_per_chunk: int = FRAMES_PER_CHUNK) -> Iterator[np.ndarray]:
    """Read the gains of the channels ``group`` back from a gains file, in frame order.

    Yields
    ------
    np.ndarray [shape=(group size, frames, bins)]
        Chunks of at most ``frames_per_chunk`` frames, in the file's dtype.

    Raises
    ------
    InternalError
        The file is not a gains file as :class:`GainFileWriter` lays it out, or ends early.
    """
    with open(path, "rb") as source:
        if np.lib.format.read_magic(source) != (1, 0):
            raise InternalError(f"{Path(path)} is not a version 1.0 .npy as the subtract step writes")
        (_, frames, bins), _, dtype = np.lib.format.read_array_header_1_0(source)
        data_start = source.tell()
        row_bytes = bins * dtype.itemsize
        channels = range(group.start, group.stop)
        for start in range(0, frames, frames_per_chunk):
            count = min(frames_per_chunk, frames - start)
            rows = [os.pread(source.fileno(), count * row_bytes, data_start + (channel * frames + start) * row_bytes) for channel in channels]
            if any(len(row) != count * row_bytes for row in rows):
                raise InternalError(f"{Path(path)} ends within frames {start}..{start + count} of {frames}")
            yield np.stack([np.frombuffer(row, dtype=dtype).reshape(count, bins) for row in rows])
