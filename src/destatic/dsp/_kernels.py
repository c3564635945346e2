"""The compiled loops of the DSP core (numba): the per-frame work over frames and bins, without the GIL.

Imported only when a stream is filtered: ``import destatic`` loads no numba.
Each loop repeats the float32 arithmetic of the numpy formulation kept in
the test suite (``tests/dsp/dsp_reference.py``) operation for operation, in the
same order, with no fast-math or fused multiply-add, so the gains agree with
it to the last bit except where ``exp``, ``log`` and ``log10`` round their
last bit differently (the OM-LSA weighting, whose loop may also fuse
multiply-adds, and the Berouti SNR), and nothing depends on how frames are
grouped into calls.

The compiled code is cached on disk (``cache=True``) in ``NUMBA_CACHE_DIR``
if that is set, else in the user's cache folder,
``$XDG_CACHE_HOME/destatic/numba`` (by default ``~/.cache/destatic/numba``):
a second process loads it instead of compiling, and nothing is written
beside the installed package. The folder is chosen for these functions
only (other packages' numba caches stay where numba puts them). Where it
cannot be written the loops are compiled in each process, uncached.
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import numba
import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.core import config as _numba_config
from numba.extending import intrinsic

__all__ = [
    "METHOD_LOGMMSE",
    "METHOD_SUBTRACT",
    "METHOD_WIENER",
    "append_columns",
    "cache_folder",
    "floats_of_halves",
    "frames_into",
    "halves_into",
    "one_pole_into",
    "overlap_add",
    "smooth_bins_into",
    "suppression_gains",
    "track_noise",
    "weigh_by_halves",
]

METHOD_SUBTRACT = 1
METHOD_WIENER = 2
METHOD_LOGMMSE = 3
LOGMMSE_INDEX_SHIFT = 13
"""float32 mantissa bits below the 1024 cells per octave of the log-MMSE table (23 - 10)."""

CONSTANTS = ("scale", "floor", "log_floor", "dd_smoothing", "xi_min", "log_prior_odds", "alpha", "beta",
             "track_smoothing", "speech_threshold", "noise_keep")
"""The float32 constants :func:`suppression_gains` takes, in order (``alpha`` < 0: from each frame's SNR)."""


def cache_folder() -> Path | None:
    """Where the compiled loops are cached: ``NUMBA_CACHE_DIR``, else the user cache folder; None if it cannot be written."""
    chosen = os.environ.get("NUMBA_CACHE_DIR") or _numba_config.CACHE_DIR
    if chosen:
        folder = Path(chosen)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = Path(base) / "destatic" / "numba"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return None
    return folder


_CACHE_FOLDER = cache_folder()


def _compiled(function=None, *, fused: bool = False):
    """``numba.njit(nogil=True)``, cached in :func:`cache_folder`; ``fused`` lets multiply-adds fuse (FMA).

    numba picks a function's cache folder when it is decorated, from
    ``numba.config.CACHE_DIR``: that is set to ours for the decoration only.
    Division by zero follows IEEE (``error_model="numpy"``), without the
    checks that would stop loops from vectorising. Only the loops that are
    not bit-identical to the numpy oracle anyway (``exp``, ``log``) are
    ``fused``.
    """
    if function is None:
        return lambda function: _compiled(function, fused=fused)
    options = {"nogil": True, "error_model": "numpy", "fastmath": {"contract"} if fused else False}
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
    """The bit pattern of a float32 as an int32 (a no-op in machine code)."""
    if value != types.float32:
        return None
    return types.int32(types.float32), lambda context, builder, signature, args: builder.bitcast(args[0], ir.IntType(32))


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


@_compiled(fused=True)
def exp_into(values, out):
    """:func:`_exp` of each float32 value (for the tests)."""
    for i in range(values.shape[0]):
        out[i] = _exp(values[i])


@_compiled(fused=True)
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


@_compiled
def halves_into(values, out):
    """``values`` (float32) as float16 bits in ``out`` (uint16), rounded as ``values.astype(np.float16)``; both 1-D."""
    for i in range(values.shape[0]):
        out[i] = _half(values[i])


@_compiled
def floats_of_halves(halves, out):
    """float16 bits (uint16) as float32 in ``out``, as ``astype(np.float32)``; both 1-D."""
    for i in range(halves.shape[0]):
        out[i] = _unhalf(halves[i])


@_compiled
def software_halves_into(values, out):
    """:func:`halves_into` without the CPU's conversion (what runs where it has none; for the tests)."""
    for i in range(values.shape[0]):
        out[i] = _to_half(values[i])


@_compiled
def software_floats_of_halves(halves, out):
    """:func:`floats_of_halves` without the CPU's conversion (for the tests)."""
    for i in range(halves.shape[0]):
        out[i] = _from_half(halves[i])


@_compiled
def weigh_by_halves(parts, halves, residue):
    """Multiply spectra (``parts``: their float32 view, (channels, frames, 2 bins)) by float16 gains (uint16 bits, (channels, frames, bins)), or by one minus them."""
    one = np.float32(1.0)
    channels, frames, bins = halves.shape
    for c in range(channels):
        for f in range(frames):
            pairs = parts[c, f]
            row = halves[c, f]
            for b in range(bins):
                g = _unhalf(row[b])
                if residue:
                    g = one - g
                pairs[2 * b] *= g
                pairs[2 * b + 1] *= g


@_compiled
def append_columns(buffer, held, block):
    """Copy ``block`` (n, channels) into ``buffer`` (channels, >= held + n) after its first ``held`` samples."""
    n, channels = block.shape
    for c in range(channels):
        row = buffer[c, held : held + n]
        for i in range(n):
            row[i] = block[i, c]


@_compiled
def frames_into(frames, stream, window, hop):
    """Window the frames of ``stream`` (channels, samples) into ``frames`` (channels, n, n_fft); frame ``k`` starts at ``k * hop``."""
    channels, n_frames, n_fft = frames.shape
    for c in range(channels):
        for k in range(n_frames):
            source = stream[c, k * hop : k * hop + n_fft]
            row = frames[c, k]
            for i in range(n_fft):
                row[i] = source[i] * window[i]


@_compiled
def overlap_add(frames, window, squared, hop, total, weight, out, first_out):
    """Window the ``frames`` (channels, n, n_fft) and add them, in frame order, into ``total`` and ``weight``.

    ``total`` (channels, >= tail + n * hop, with ``tail = n_fft - hop``)
    starts with the previous call's tail and zeros after it; ``weight``
    likewise holds the squared windows. The first ``n * hop`` samples are
    then complete: each is divided by its weight (where that is above the
    smallest normal float32) and ``out.shape[0]`` of them, from the
    ``first_out``-th on, are written to ``out`` (samples, channels). The tail
    then moves to the front and the rest is zeroed for the next call.
    """
    channels, n_frames, n_fft = frames.shape
    done = n_frames * hop
    tail = n_fft - hop
    for k in range(n_frames):
        target = weight[k * hop : k * hop + n_fft]
        for i in range(n_fft):
            target[i] += squared[i]
    tiny = np.float32(np.finfo(np.float32).tiny)
    one = np.float32(1.0)
    smallest = np.float32(1e-30)
    scale = np.empty(done, np.float32)
    for s in range(done):
        w = weight[s]
        scale[s] = one / max(w, smallest) if w > tiny else one
    count = out.shape[0]
    for c in range(channels):
        row = total[c]
        for k in range(n_frames):
            target = row[k * hop : k * hop + n_fft]
            frame = frames[c, k]
            for i in range(n_fft):
                target[i] += frame[i] * window[i]
        finished = row[first_out : first_out + count]
        factors = scale[first_out : first_out + count]
        for s in range(count):
            out[s, c] = finished[s] * factors[s]
        row[:tail] = row[done : done + tail]
        row[tail : tail + done] = 0.0
    weight[:tail] = weight[done : done + tail]
    weight[tail : tail + done] = 0.0


@_compiled
def one_pole_into(values, smoothing, previous, out):
    """``out[t] = smoothing * out[t-1] + (1 - smoothing) * values[t]`` along axis 0 from ``out[-1] = previous`` (float64, 2-D).

    ``previous`` is updated to the last row.
    """
    fresh_weight = 1.0 - smoothing
    for t in range(values.shape[0]):
        row = values[t]
        target = out[t]
        for j in range(row.shape[0]):
            value = previous[j] * smoothing + row[j] * fresh_weight
            target[j] = value
            previous[j] = value


@_compiled
def smooth_bins_into(power, out):
    """One frame smoothed over frequency by (1/4, 1/2, 1/4), edges repeated: ``smooth_bins``' additions in its order."""
    bins = power.shape[0]
    quarter = np.float32(0.25)
    first = power[0] * quarter
    last = power[bins - 1] * quarter
    out[0] = ((first + first) + power[1] * quarter) + first
    for b in range(1, bins - 1):
        q = power[b] * quarter
        out[b] = ((q + q) + power[b - 1] * quarter) + power[b + 1] * quarter
    out[bins - 1] = ((last + last) + power[bins - 2] * quarter) + last


@_compiled
def _track_frame(power, smoothed_power, state, ring, counters, ceiling, smoothing, threshold, keep, subwindow, scale, noise):
    """One frame of the noise tracker (MCRA over minimum statistics) for one channel; ``noise`` gets the estimate times ``scale``.

    ``state`` (4, bins): the power smoothed over time, the running minimum of
    the current sub-window, the minimum of the ring of finished sub-window
    minima, the noise estimate; ``counters``: the ring position and the
    frames of the current sub-window. Where the smoothed power stays within
    ``threshold`` of the minimum (speech absent) the estimate moves towards
    the frame's power by ``1 - keep``; it never exceeds ``ceiling``. What
    ``noise`` gets is floored at 1e-30 (the gain rules divide by it).
    """
    one = np.float32(1.0)
    smallest = np.float32(1e-30)
    fresh_weight = one - smoothing
    keep_fresh = one - keep
    smoothed = state[0]
    sub_minimum = state[1]
    ring_minimum = state[2]
    estimate = state[3]
    for b in range(power.shape[0]):
        current = smoothed[b] * smoothing + smoothed_power[b] * fresh_weight
        running = min(sub_minimum[b], current)
        speech = current > threshold * min(running, ring_minimum[b])
        value = estimate[b] if speech else estimate[b] * keep + keep_fresh * power[b]
        value = min(value, ceiling[b])
        smoothed[b] = current
        sub_minimum[b] = running
        estimate[b] = value
        noise[b] = max(value * scale, smallest)
    counters[1] += 1
    if counters[1] == subwindow:
        ring[counters[0]] = sub_minimum
        counters[0] = (counters[0] + 1) % ring.shape[0]
        for b in range(power.shape[0]):
            lowest = ring[0, b]
            for r in range(1, ring.shape[0]):
                lowest = min(lowest, ring[r, b])
            ring_minimum[b] = lowest
            sub_minimum[b] = smoothed[b]
        counters[1] = 0


@_compiled
def track_noise(power, state, ring, counters, ceiling, smoothing, threshold, keep, subwindow, noise):
    """The noise tracker alone over ``power`` (channels, frames, bins): its estimate per frame into ``noise``."""
    channels, n_frames, bins = power.shape
    smoothed_power = np.empty(bins, np.float32)
    start_counters = counters.copy()
    for c in range(channels):
        counters[:] = start_counters
        for f in range(n_frames):
            smooth_bins_into(power[c, f], smoothed_power)
            _track_frame(power[c, f], smoothed_power, state[c], ring[c], counters, ceiling[c],
                         smoothing, threshold, keep, subwindow, np.float32(1.0), noise[c, f])


@_compiled
def _decision_directed(power, noise, prior, dd_smoothing, xi_min, wiener, v):
    """Wiener gain from the decision-directed prior SNR; ``v = wiener * gamma`` for the log-MMSE rule."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    dd_fresh = one - dd_smoothing
    gamma_low = np.float32(1e-10)
    gamma_high = np.float32(1e6)
    for b in range(power.shape[0]):
        gamma = min(max(power[b] / noise[b], gamma_low), gamma_high)
        fresh = max(max(gamma - one, zero) * dd_fresh, xi_min)
        last = prior[b]
        gain = (last + fresh) / (last + (fresh + one))
        prior[b] = (gain * (gamma * dd_smoothing)) * gain
        wiener[b] = gain
        v[b] = gain * gamma


@_compiled(fused=True)
def _log_mmse(wiener, v, table, table_first, presence, log_prior_odds, floor, log_floor, gain):
    """Log-MMSE: the Wiener gain times exp(E1(v) / 2) (by table), limited to 1; OM-LSA weighting if ``presence``.

    The weighting is ``G^p * floor^(1 - p)`` with ``p`` the probability that
    speech is present, ``1 / (1 + q / (1 - q) * (1 + xi) * exp(-v))`` (see
    ``GainComputer`` in ``tests/dsp/dsp_reference.py``).
    """
    one = np.float32(1.0)
    odds_low = np.float32(-80.0)
    last_cell = table.shape[0] - 1
    for b in range(gain.shape[0]):
        gain[b] = table[_cell(v[b], table_first, last_cell)]
    if presence:
        for b in range(gain.shape[0]):
            w = wiener[b]
            value = min(w * gain[b], one)
            odds = _exp(max(log_prior_odds - v[b], odds_low)) / (one - w) + one
            gain[b] = _exp((_log(max(value, floor)) - log_floor) / odds + log_floor)
    else:
        for b in range(gain.shape[0]):
            gain[b] = min(wiener[b] * gain[b], one)


@_compiled
def _berouti(power, noise, alpha, beta, gain):
    """Power subtraction ``max(1 - alpha / gamma, beta / gamma)`` under a square root; ``alpha < 0``: from the frame's SNR."""
    one = np.float32(1.0)
    gamma_low = np.float32(1e-10)
    gamma_high = np.float32(1e6)
    if alpha < 0:
        total_power = 0.0
        total_noise = 0.0
        for b in range(power.shape[0]):
            total_power += power[b]
            total_noise += noise[b]
        ratio = max(np.float32(total_power), np.float32(1e-30)) / np.float32(total_noise)
        snr_db = np.float32(10.0) * np.log10(ratio)
        alpha = min(max(np.float32(4.0) - np.float32(0.15) * snr_db, one), np.float32(5.0))
    for b in range(power.shape[0]):
        gamma = min(max(power[b] / noise[b], gamma_low), gamma_high)
        gain[b] = np.sqrt(max(one - alpha / gamma, beta / gamma))


@_compiled
def _smooth_gain_over_bins(gain, kernel, padded):
    """Convolve with the symmetric ``kernel``, the edge bins repeated outwards (``padded``: scratch, bins + 2 half)."""
    bins = gain.shape[0]
    half = kernel.shape[0] // 2
    for b in range(half):
        padded[b] = gain[0]
        padded[bins + half + b] = gain[bins - 1]
    for b in range(bins):
        padded[half + b] = gain[b]
    for b in range(bins):
        total = kernel[0] * padded[b]
        for k in range(1, kernel.shape[0]):
            total += kernel[k] * padded[b + k]
        gain[b] = total


@_compiled
def suppression_gains(
    spectra, parts, gains, apply, method, constants, noise_power,
    track, state, ring, counters, ceiling, subwindow,
    prior, table, table_first, presence, kernel,
    time_smoothing, time_state, time_started,
):
    """The gains of ``spectra`` (channels, frames, bins) frame by frame, the state updated in place.

    ``apply`` 0 writes them to ``gains``; 1 multiplies ``spectra`` by them in
    place instead (through ``parts``, its float32 view of shape (channels,
    frames, 2 bins)), 2 by one minus them (the residue), and ``gains`` is
    not used.

    ``constants`` holds the float32 values named in :data:`CONSTANTS`;
    without ``track`` the noise is ``noise_power`` (channels, bins), with it
    the tracker's ``state`` (channels, 4, bins), ``ring`` (channels, ring,
    bins) and ``counters`` follow it. ``prior`` is the decision-directed
    state (the last frame's ``G^2 gamma``), ``kernel`` the frequency
    smoothing (empty: none), ``time_state`` (float64) and ``time_started`` the
    time smoothing's.
    """
    channels, n_frames, bins = spectra.shape
    one = np.float32(1.0)
    scale = constants[0]
    floor = constants[1]
    power = np.empty(bins, np.float32)
    smoothed_power = np.empty(bins, np.float32)
    tracked = np.empty(bins, np.float32)
    gain = np.empty(bins, np.float32)
    wiener = np.empty(bins, np.float32)
    v = np.empty(bins, np.float32)
    padded = np.empty(bins + kernel.shape[0], np.float32)
    start_counters = counters.copy()
    fresh_part = 1.0 - time_smoothing
    plain = kernel.shape[0] == 0 and time_smoothing == 0.0
    for c in range(channels):
        counters[:] = start_counters
        for f in range(n_frames):
            frame = spectra[c, f]
            for b in range(bins):
                z = frame[b]
                power[b] = z.real * z.real + z.imag * z.imag
            if track:
                smooth_bins_into(power, smoothed_power)
                _track_frame(power, smoothed_power, state[c], ring[c], counters, ceiling[c],
                             constants[8], constants[9], constants[10], subwindow, scale, tracked)
                noise = tracked
            else:
                noise = noise_power[c]
            if method == METHOD_SUBTRACT:
                _berouti(power, noise, constants[6], constants[7], gain)
            elif method == METHOD_LOGMMSE:
                _decision_directed(power, noise, prior[c], constants[3], constants[4], wiener, v)
                _log_mmse(wiener, v, table, table_first, presence, constants[5], floor, constants[2], gain)
            else:
                _decision_directed(power, noise, prior[c], constants[3], constants[4], gain, v)
            if plain:
                _limit_and_apply(gain, floor, one, apply, gains[c, f] if apply == 0 else gain, parts[c, f])
                continue
            for b in range(bins):
                gain[b] = min(max(gain[b], floor), one)
            if kernel.shape[0]:
                _smooth_gain_over_bins(gain, kernel, padded)
            if time_smoothing != 0.0:
                smoothed = time_state[c]
                if not time_started[c]:
                    for b in range(bins):
                        smoothed[b] = gain[b]
                    time_started[c] = True
                for b in range(bins):
                    value = smoothed[b] * time_smoothing + np.float64(gain[b]) * fresh_part
                    smoothed[b] = value
                    gain[b] = np.float32(value)
            _limit_and_apply(gain, np.float32(-np.inf), np.float32(np.inf), apply, gains[c, f] if apply == 0 else gain, parts[c, f])


@_compiled
def _limit_and_apply(gain, low, high, apply, out, pairs):
    """Clip ``gain`` to [``low``, ``high``], then write it to ``out`` (``apply`` 0) or multiply the spectrum's ``pairs`` by it (1) or by one minus it (2)."""
    one = np.float32(1.0)
    if apply == 0:
        for b in range(gain.shape[0]):
            out[b] = min(max(gain[b], low), high)
    elif apply == 1:
        for b in range(gain.shape[0]):
            g = min(max(gain[b], low), high)
            pairs[2 * b] *= g
            pairs[2 * b + 1] *= g
    else:
        for b in range(gain.shape[0]):
            g = one - min(max(gain[b], low), high)
            pairs[2 * b] *= g
            pairs[2 * b + 1] *= g
