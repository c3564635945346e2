"""What the compiled loops of the DSP core (:mod:`destatic.dsp._kernels`, :mod:`destatic.dsp._mixing`) are built with: numba's set-up and the scalar pieces they inline.

- :func:`compiled`: ``numba.njit`` without the GIL, IEEE division (no
  zero checks, so loops vectorise), cached on disk in :func:`cache_folder`;
- bit-level intrinsics (a float32's bits, 2**k, exponent and mantissa, the
  log-MMSE table's cell, the CPU's half-precision conversions);
- ``exp`` and ``log`` of float32 that vectorise (libm's calls do not), and
  half-precision rounding in software for CPUs without a conversion.

The compiled code is cached in ``NUMBA_CACHE_DIR`` if that is set, else in
the user's cache folder, ``$XDG_CACHE_HOME/destatic/numba`` (by default
``~/.cache/destatic/numba``), in a subfolder named by a digest of this file
and the loops' modules (:data:`SOURCES`): a second process loads it instead of compiling, nothing
is written beside the installed package, and a change to any of them (numba
itself only notices changes to the file a function is in, not to what it
inlines from another) compiles afresh. A version's subfolder that no
process has used for 30 days is removed by the next process of another
version. The folder is chosen for these functions only; other packages'
numba caches stay where numba puts them.
Where it cannot be written the loops are compiled in each process, uncached.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numba
import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.core import config as _numba_config
from numba.extending import intrinsic

__all__ = [
    "HARDWARE_HALVES",
    "LOGMMSE_INDEX_SHIFT",
    "cache_folder",
    "cache_subfolder",
    "caching_other_packages",
    "compiled",
    "exp_into",
    "exp_to_float32",
    "floats_of_halves",
    "halves_into",
    "log_into",
    "software_floats_of_halves",
    "software_halves_into",
]

LOGMMSE_INDEX_SHIFT = 13
"""float32 mantissa bits below the 1024 cells per octave of the log-MMSE table (23 - 10)."""
SOURCES = ("_numba.py", "_kernels.py", "_mixing.py")
"""The files whose compiled code is cached; their digest names the cache's subfolder."""
STALE_AFTER_S = 30 * 86400.0
"""A digest-named cache subfolder no process has used for this long (another version's) is removed."""


def cache_folder() -> Path | None:
    """Where the compiled loops are cached (see the module's notes); None if it cannot be written."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256(b"".join((here / name).read_bytes() for name in SOURCES)).hexdigest()[:16]
    return cache_subfolder(digest)


def cache_subfolder(name: str) -> Path | None:
    """The folder `name` in the base of the compiled loops' cache (``NUMBA_CACHE_DIR``, else the user's cache), made; None if it cannot be written.

    Other things destatic's DSP core builds once and keeps (the edited
    DeepFilterNet3 graphs) go beside the compiled loops, chosen the same way.
    """
    chosen = os.environ.get("NUMBA_CACHE_DIR") or _numba_config.CACHE_DIR
    if chosen:
        base = Path(chosen)
    else:
        home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = Path(home) / "destatic" / "numba"
    folder = base / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()  # also marks the folder used, by its time of change
    except OSError:
        return None
    _remove_stale_versions(folder)
    return folder


def _remove_stale_versions(folder: Path) -> None:
    """Remove the siblings of `folder` named as it is but for their digest and unused for :data:`STALE_AFTER_S`.

    Each version of the code (or of the model) has its own subfolder, and
    nothing else would ever remove those of earlier versions.
    """
    family = re.fullmatch(r"(.*?)[0-9a-f]{16}", folder.name)
    if family is None:
        return
    pattern = re.compile(re.escape(family.group(1)) + r"[0-9a-f]{16}")
    now = time.time()
    with contextlib.suppress(OSError):
        for sibling in folder.parent.iterdir():
            with contextlib.suppress(OSError):
                if sibling != folder and pattern.fullmatch(sibling.name) and now - sibling.stat().st_mtime > STALE_AFTER_S:
                    shutil.rmtree(sibling, ignore_errors=True)


_CACHE_FOLDER = cache_folder()


def loops_to_compile() -> bool:
    """Whether numba's cache for this version of the loops can keep them but holds none yet (the next use compiles and keeps them)."""
    return _CACHE_FOLDER is not None and not any(_CACHE_FOLDER.rglob("*.nbi"))


def say_if_compiling() -> None:
    """Once per process, on standard error: that the loops are being compiled, when numba's cache holds none yet.

    The first call in a fresh environment takes several seconds more than
    the next ones; without a word it looks like a hang.
    """
    global _said
    if _said:
        return
    _said = True
    if _CACHE_FOLDER is None or loops_to_compile():
        where = f"; they are kept in {_CACHE_FOLDER}" if _CACHE_FOLDER is not None else ""
        print(f"destatic: compiling the DSP loops for this machine, once (10-20 s){where}", file=sys.stderr, flush=True)


_said = False


@contextlib.contextmanager
def caching_other_packages(fallback: Path) -> Iterator[None]:
    """While other packages' cached numba functions are decorated (librosa's, as it is imported), cache them beside ours, else in `fallback`.

    numba refuses to decorate such a function where it finds no folder it may
    write (a read-only install and no writable user cache: a service
    account). An explicit ``NUMBA_CACHE_DIR`` is left as it is.
    """
    saved = _numba_config.CACHE_DIR
    if not saved:
        folder = _CACHE_FOLDER.parent / "packages" if _CACHE_FOLDER is not None else fallback
        folder.mkdir(parents=True, exist_ok=True)
        _numba_config.CACHE_DIR = str(folder)
    try:
        yield
    finally:
        _numba_config.CACHE_DIR = saved


def compiled(function=None, *, fused: bool = False, reassociated: bool = False):
    """``numba.njit(nogil=True)``, cached in :func:`cache_folder`; ``fused`` lets multiply-adds fuse (FMA), ``reassociated`` sums reorder.

    numba picks a function's cache folder when it is decorated, from
    ``numba.config.CACHE_DIR``: that is set to ours for the decoration only.
    Division by zero follows IEEE (``error_model="numpy"``), without the
    checks that would stop loops from vectorising. Only the loops that are
    not bit-identical to the numpy oracle anyway (``exp``, ``log``) are
    ``fused``; only DeepFilterNet3's GRU, whose dot products vectorise only
    when their sums may be reordered, is ``reassociated``.
    """
    if function is None:
        return lambda function: compiled(function, fused=fused, reassociated=reassociated)
    fastmath = ({"contract"} if fused else set()) | ({"reassoc"} if reassociated else set())
    options = {"nogil": True, "error_model": "numpy", "fastmath": fastmath or False}
    if _CACHE_FOLDER is None:
        return numba.njit(cache=False, **options)(function)
    saved = _numba_config.CACHE_DIR
    _numba_config.CACHE_DIR = str(_CACHE_FOLDER)
    try:
        return numba.njit(cache=True, **options)(function)
    finally:
        _numba_config.CACHE_DIR = saved


def _i32(builder, value):
    return builder.trunc(value, ir.IntType(32)) if value.type.width > 32 else value


@intrinsic
def _bits(typingctx, value):
    """The bit pattern of a float32 as an int32, or of a float64 as an int64 (a no-op in machine code)."""
    integers = {types.float32: types.int32, types.float64: types.int64}
    if value not in integers:
        return None
    width = integers[value].bitwidth
    return integers[value](value), lambda context, builder, signature, args: builder.bitcast(args[0], ir.IntType(width))


@intrinsic
def _from_bits(typingctx, bits):
    """The float32 whose bit pattern is the low 32 bits of the integer ``bits`` (numba widens int32 arithmetic)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(_i32(builder, args[0]), ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _pow2(typingctx, k):
    """2**k for a float32 holding an integer in [-126, 127]: its exponent bits, in int32 (so loops vectorise)."""
    if k != types.float32:
        return None

    def codegen(context, builder, signature, args):
        exponent = builder.add(builder.fptosi(args[0], ir.IntType(32)), ir.Constant(ir.IntType(32), 127))
        return builder.bitcast(builder.shl(exponent, ir.Constant(ir.IntType(32), 23)), ir.FloatType())

    return types.float32(types.float32), codegen


@intrinsic
def _pow2_of_shifted(typingctx, shifted):
    """2**k for a float64 ``1.5 * 2**52 + k``, k in [-1022, 1023]: the low bits of its pattern moved to the exponent's place.

    Integer adds and shifts only, which vectorise (AVX2 has no float64 to int64 conversion).
    """
    if shifted != types.float64:
        return None

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        exponent = builder.add(builder.bitcast(args[0], i64), ir.Constant(i64, 1023))
        return builder.bitcast(builder.shl(exponent, ir.Constant(i64, 52)), ir.DoubleType())

    return types.float64(types.float64), codegen


@intrinsic
def _exponent_and_mantissa(typingctx, x):
    """``(k, m)`` with ``x = 2**k * m``, ``m`` in [1, 2), both float32, for a positive normal float32 ``x``."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.bitcast(args[0], i32)
        exponent = builder.sub(builder.lshr(bits, ir.Constant(i32, 23)), ir.Constant(i32, 127))
        mantissa = builder.or_(builder.and_(bits, ir.Constant(i32, 0x7FFFFF)), ir.Constant(i32, 0x3F800000))
        pair = (builder.sitofp(exponent, ir.FloatType()), builder.bitcast(mantissa, ir.FloatType()))
        return context.make_tuple(builder, signature.return_type, pair)

    return types.UniTuple(types.float32, 2)(types.float32), codegen


@intrinsic
def _cell(typingctx, v, first, last):
    """The log-MMSE table cell of a non-negative float32 ``v``: its top bits, less ``first``, within [0, ``last``]."""
    if v != types.float32 or not isinstance(first, types.Integer) or not isinstance(last, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        cell = builder.sub(
            builder.lshr(builder.bitcast(args[0], i32), ir.Constant(i32, LOGMMSE_INDEX_SHIFT)), _i32(builder, args[1])
        )
        zero = ir.Constant(i32, 0)
        cell = builder.select(builder.icmp_signed("<", cell, zero), zero, cell)
        top = _i32(builder, args[2])
        cell = builder.select(builder.icmp_signed(">", cell, top), top, cell)
        return builder.sext(cell, ir.IntType(64))

    return types.int64(v, first, last), codegen


LN2_HIGH = np.float32(0.693359375)
"""ln 2 to 9 bits (355 / 512), so that ``k * LN2_HIGH`` is exact for the exponents that occur."""
LN2_LOW = np.float32(-2.12194440e-4)
"""ln 2 - LN2_HIGH."""
LOG2_E = np.float32(1.4426950408889634)
SQRT2 = np.float32(1.4142135)
EXP_COEFFICIENTS = (
    np.float32(0.49999988079071045),
    np.float32(0.166665181517601),
    np.float32(0.04166953265666962),
    np.float32(0.008368915878236294),
    np.float32(0.0013751407386735082),
)
"""``(exp(r) - 1 - r) / r**2`` as a quartic on |r| <= ln(2) / 2: least squares of the relative error on 2000 Chebyshev nodes.

With them :func:`_exp` is within 1 ulp of ``exp`` over [-87, 88]; ``_log``
(the series of ``2 atanh``) within 2 ulp for positive normal floats; numpy's
own float32 ``exp`` and ``log`` are within 2.4 and 3.4 ulp
(``tests/dsp/test_kernels.py`` checks both).
"""


@numba.njit(inline="always", error_model="numpy")
def _exp(x):
    """exp of a float32 in [-87, 88], vectorisable: 2**k times a polynomial on the rest."""
    k = np.floor(x * LOG2_E + np.float32(0.5))
    r = (x - k * LN2_HIGH) - k * LN2_LOW
    c2, c3, c4, c5, c6 = EXP_COEFFICIENTS
    p = (((c6 * r + c5) * r + c4) * r + c3) * r + c2
    p = (r * r) * p + r + np.float32(1.0)
    return p * _pow2(k)


EXP64_LN2_HIGH = 6.93147180369123816490e-01
"""ln 2 with its low 32 mantissa bits zero, so that ``k * EXP64_LN2_HIGH`` is exact."""
EXP64_LN2_LOW = 1.90821492927058770002e-10
"""ln 2 - EXP64_LN2_HIGH."""
EXP64_SHIFT = 6755399441055744.0
"""1.5 * 2**52: added to a float64 below 2**51 in magnitude, it rounds it to an integer held in the low mantissa bits."""
EXP64_COEFFICIENTS = tuple(1.0 / math.factorial(n) for n in range(14))
"""exp's Taylor series to r**13 / 13!: on |r| <= ln(2) / 2 the first term left out is below 5e-18, so :func:`_exp64` is within a few ulp."""
EXP64_SAFE_ULPS = 1 << 10
"""How far, in float64 ulp, :func:`_exp64` must be from a float32 rounding midpoint for :func:`exp_to_float32` to trust it."""


@numba.njit(inline="always", error_model="numpy")
def _exp64(x):
    """exp of a float64 in [-708, 709], within a few ulp, vectorisable: 2**k times the Taylor series of the rest."""
    shifted = x * 1.4426950408889634 + EXP64_SHIFT  # k = x / ln 2 rounded, in the low bits
    k = shifted - EXP64_SHIFT
    r = (x - k * EXP64_LN2_HIGH) - k * EXP64_LN2_LOW
    c = EXP64_COEFFICIENTS
    p = ((((((c[13] * r + c[12]) * r + c[11]) * r + c[10]) * r + c[9]) * r + c[8]) * r + c[7]) * r + c[6]
    p = (((((p * r + c[5]) * r + c[4]) * r + c[3]) * r + c[2]) * r + c[1]) * r + c[0]
    return p * _pow2_of_shifted(shifted)


@numba.njit(inline="always", error_model="numpy")
def _exp_rounds_safely(x, approximate):
    """Whether float32 of :func:`_exp64`'s `approximate` exp of `x` is float32 of the exact one (False: ask libm).

    Where ``exp(x)`` is a normal float32, two float64 values within a few
    ulp of it round to the same float32 unless a float32 rounding midpoint
    (the low 29 of their 52 mantissa bits at half) lies between them.
    """
    low = _bits(approximate) & ((1 << 29) - 1)
    return (x > -87.0) & (x < 88.0) & (abs(low - (1 << 28)) > EXP64_SAFE_ULPS)


@numba.njit(inline="always", error_model="numpy")
def exp_to_float32(values, out):
    """``out[i] = float32(exp(values[i]))``, to the bit as from libm's float64 exp, at the cost of :func:`_exp64`.

    The values rounded unsafely (a few in a million) are redone with libm's
    exp in a loop of their own: in the same loop as the others, the compiler
    would compute libm's exp for every value.
    """
    unsafe = 0
    for i in range(values.shape[0]):
        approximate = _exp64(values[i])
        out[i] = np.float32(approximate)
        unsafe += not _exp_rounds_safely(values[i], approximate)
    if unsafe:
        for i in range(values.shape[0]):
            if not _exp_rounds_safely(values[i], _exp64(values[i])):
                out[i] = np.float32(np.exp(values[i]))


@numba.njit(inline="always", error_model="numpy")
def _log(x):
    """log of a positive normal float32, vectorisable: exponent times ln 2 plus the series of 2 atanh((m-1)/(m+1))."""
    exponent, m = _exponent_and_mantissa(x)
    if m > SQRT2:
        m = m * np.float32(0.5)
        exponent = exponent + np.float32(1.0)
    f = m - np.float32(1.0)
    s = f / (m + np.float32(1.0))
    z = s * s
    p = ((np.float32(1 / 9) * z + np.float32(1 / 7)) * z + np.float32(1 / 5)) * z + np.float32(1 / 3)
    two_s = s + s
    return exponent * LN2_HIGH + (exponent * LN2_LOW + (two_s + two_s * z * p))


@compiled(fused=True)
def exp_into(values, out):
    """:func:`_exp` of each float32 value (for the tests)."""
    for i in range(values.shape[0]):
        out[i] = _exp(values[i])


@compiled(fused=True)
def log_into(values, out):
    """:func:`_log` of each float32 value (for the tests)."""
    for i in range(values.shape[0]):
        out[i] = _log(values[i])


@numba.njit(inline="always", error_model="numpy")
def _to_half(value):
    """The IEEE half-precision bits of a float32, rounded to nearest, ties to even (subnormals, overflow to inf, NaN kept).

    Every case is computed and one is selected, so that loops vectorise.
    """
    bits = np.int64(_bits(value)) & 0xFFFFFFFF
    sign = (bits >> 16) & 0x8000
    exponent = (bits >> 23) & 0xFF
    mantissa = bits & 0x7FFFFF
    normal = ((exponent - 112) << 10) | (mantissa >> 13)
    rest = mantissa & 0x1FFF
    normal += np.int64((rest > 0x1000) | ((rest == 0x1000) & ((normal & 1) == 1)))
    shift = min(max(126 - exponent, 14), 25)
    significand = mantissa | 0x800000
    small = significand >> shift
    rest = significand & ((1 << shift) - 1)
    middle = 1 << (shift - 1)
    small += np.int64((rest > middle) | ((rest == middle) & ((small & 1) == 1)))
    payload = 0x7C00 | (mantissa >> 13)
    special = 0x7C00 if mantissa == 0 else (payload if payload != 0x7C00 else 0x7C01)
    half = normal if exponent >= 113 else (small if exponent >= 102 else 0)
    half = 0x7C00 if exponent >= 143 else half
    half = special if exponent == 0xFF else half
    return sign | half


@numba.njit(inline="always", error_model="numpy")
def _from_half(half):
    """The float32 of IEEE half-precision bits (exact)."""
    half = np.int64(half)
    sign = (half & 0x8000) << 16
    exponent = (half >> 10) & 0x1F
    mantissa = half & 0x3FF
    if exponent == 0:
        magnitude = np.float32(mantissa) * np.float32(2.0**-24)
        return -magnitude if sign else magnitude
    if exponent == 31:
        return _from_bits(sign | 0x7F800000 | (mantissa << 13))
    return _from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13))


@intrinsic
def _hardware_half(typingctx, value):
    """float32 to float16 bits by the CPU's own conversion (F16C's vcvtps2ph: IEEE, to nearest, ties to even)."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.uint16(types.float32), codegen


@intrinsic
def _hardware_unhalf(typingctx, half):
    """float16 bits to float32 by the CPU's own conversion (F16C's vcvtph2ps, exact)."""
    if not isinstance(half, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        bits = builder.trunc(args[0], ir.IntType(16)) if half.bitwidth > 16 else args[0]
        return builder.fpext(builder.bitcast(bits, ir.HalfType()), ir.FloatType())

    return types.float32(half), codegen


HARDWARE_HALVES = bool(llvm_binding.get_host_cpu_features().get("f16c")) or platform.machine().lower() in ("aarch64", "arm64")
"""Whether the CPU converts half precision itself (x86 with F16C, 64-bit ARM); else :func:`_to_half` and :func:`_from_half` do.

Both round as numpy does; only a signalling NaN's payload may differ (the
hardware quiets it), and gains are never NaN.
"""


@numba.njit(inline="always", error_model="numpy")
def _half(value):
    return _hardware_half(value) if HARDWARE_HALVES else _to_half(value)


@numba.njit(inline="always", error_model="numpy")
def _unhalf(half):
    return _hardware_unhalf(half) if HARDWARE_HALVES else _from_half(half)


@compiled
def halves_into(values, out):
    """``values`` (float32) as float16 bits in ``out`` (uint16), rounded as ``values.astype(np.float16)``; both 1-D."""
    for i in range(values.shape[0]):
        out[i] = _half(values[i])


@compiled
def floats_of_halves(halves, out):
    """float16 bits (uint16) as float32 in ``out``, as ``astype(np.float32)``; both 1-D."""
    for i in range(halves.shape[0]):
        out[i] = _unhalf(halves[i])


@compiled
def software_halves_into(values, out):
    """:func:`halves_into` without the CPU's conversion (what runs where it has none; for the tests)."""
    for i in range(values.shape[0]):
        out[i] = _to_half(values[i])


@compiled
def software_floats_of_halves(halves, out):
    """:func:`floats_of_halves` without the CPU's conversion (for the tests)."""
    for i in range(halves.shape[0]):
        out[i] = _from_half(halves[i])
