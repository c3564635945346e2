"""The compiled loops of the DSP core (numba): the per-frame work over frames and bins, without the GIL.

Imported only when a stream is filtered: ``import destatic`` loads no numba.
Each loop repeats the float32 arithmetic of the numpy formulation kept in
the test suite (``tests/dsp/dsp_reference.py``) operation for operation, in the
same order, with no fast-math or fused multiply-add, so the gains agree with
it to the last bit except where ``exp``, ``log`` and ``log10`` round their
last bit differently (the OM-LSA weighting, whose loop may also fuse
multiply-adds, and the Berouti SNR), and nothing depends on how frames are
grouped into calls. How they are compiled and cached: :mod:`destatic.dsp._numba`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from destatic.dsp._numba import _cell, _exp, _log, _unhalf, compiled

__all__ = [
    "METHOD_LOGMMSE",
    "METHOD_SUBTRACT",
    "METHOD_WIENER",
    "Ceiling",
    "Constants",
    "Rule",
    "Smoothing",
    "Tracking",
    "append_columns",
    "frames_into",
    "gru_steps",
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



class Constants(NamedTuple):
    """The float32 constants of :func:`suppression_gains` (``alpha`` < 0: from each frame's SNR)."""

    scale: np.float32
    floor: np.float32
    log_floor: np.float32
    dd_smoothing: np.float32
    xi_min: np.float32
    log_prior_odds: np.float32
    alpha: np.float32
    beta: np.float32
    track_smoothing: np.float32
    speech_threshold: np.float32
    noise_keep: np.float32


class Rule(NamedTuple):
    """The rule of :func:`suppression_gains`: which, its constants, the untracked noise (channels, bins), the
    decision-directed state ``prior`` (channels, bins; the last frame's ``G^2 gamma``), the OM-LSA table and
    whether speech presence weighs the gain."""

    method: int
    constants: Constants
    noise_power: np.ndarray
    prior: np.ndarray
    table: np.ndarray
    table_first: int
    presence: bool


class Tracking(NamedTuple):
    """The noise tracker's state, followed in place when ``on``: ``state`` (channels, 4, bins), ``ring``
    (channels, ring, bins), ``counters`` and the sub-window length in frames."""

    on: bool
    state: np.ndarray
    ring: np.ndarray
    counters: np.ndarray
    subwindow: int


class Ceiling(NamedTuple):
    """When ``on``, the bound over the tracked noise (see :func:`_bound_noise`): ``limit`` and ``reference``
    (channels, bins), whether it ``drifts``, and where the drift quantile falls between two order statistics."""

    on: bool
    limit: np.ndarray
    reference: np.ndarray
    drifts: bool
    drift_index: int
    drift_fraction: float


class Smoothing(NamedTuple):
    """The gain's smoothing: ``kernel`` over frequency (empty: none), a one-pole over time of weight
    ``time_constant`` (0: none) with its state ``time_state`` (channels, bins; float64) and ``time_started``."""

    kernel: np.ndarray
    time_constant: float
    time_state: np.ndarray
    time_started: np.ndarray


@compiled
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


@compiled
def append_columns(buffer, held, block):
    """Copy ``block`` (n, channels) into ``buffer`` (channels, >= held + n) after its first ``held`` samples."""
    n, channels = block.shape
    for c in range(channels):
        row = buffer[c, held : held + n]
        for i in range(n):
            row[i] = block[i, c]


@compiled
def frames_into(frames, stream, window, hop):
    """Window the frames of ``stream`` (channels, samples) into ``frames`` (channels, n, n_fft); frame ``k`` starts at ``k * hop``."""
    channels, n_frames, n_fft = frames.shape
    for c in range(channels):
        for k in range(n_frames):
            source = stream[c, k * hop : k * hop + n_fft]
            row = frames[c, k]
            for i in range(n_fft):
                row[i] = source[i] * window[i]


@compiled
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


@compiled
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


@compiled
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


@compiled
def _track_frame(power, smoothed_power, state, ring, counters, smoothing, threshold, keep, subwindow, noise):
    """One frame of the noise tracker (MCRA over minimum statistics) for one channel; ``noise`` gets the estimate.

    ``state`` (4, bins): the power smoothed over time, the running minimum of
    the current sub-window, the minimum of the ring of finished sub-window
    minima, the noise estimate; ``counters``: the ring position and the
    frames of the current sub-window. Where the smoothed power stays within
    ``threshold`` of the minimum (speech absent) the estimate moves towards
    the frame's power by ``1 - keep``.
    """
    one = np.float32(1.0)
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
        smoothed[b] = current
        sub_minimum[b] = running
        estimate[b] = value
        noise[b] = value
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


@compiled
def track_noise(power, state, ring, counters, smoothing, threshold, keep, subwindow, noise):
    """The noise tracker alone over ``power`` (channels, frames, bins): its estimate per frame into ``noise``."""
    channels, n_frames, bins = power.shape
    smoothed_power = np.empty(bins, np.float32)
    start_counters = counters.copy()
    for c in range(channels):
        counters[:] = start_counters
        for f in range(n_frames):
            smooth_bins_into(power[c, f], smoothed_power)
            _track_frame(power[c, f], smoothed_power, state[c], ring[c], counters,
                         smoothing, threshold, keep, subwindow, noise[c, f])


@compiled
def _kth_smallest(values, k):
    """The ``k``-th smallest of ``values`` (0-based), which are reordered so that every later one is at least it (Hoare's selection)."""
    low = 0
    high = values.shape[0] - 1
    while high > low:
        first = values[low]
        middle = values[(low + high) // 2]
        last = values[high]
        pivot = max(min(first, middle), min(max(first, middle), last))
        i = low
        j = high
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if k <= j:
            high = j
        elif k >= i:
            low = i
        else:
            break
    return values[k]


@compiled
def _order_pair(values, k):
    """The ``k``-th smallest of ``values`` (0-based) and the next one (the ``k``-th again if it is the last); ``values`` are reordered."""
    below = _kth_smallest(values, k)
    above = below
    if k + 1 < values.shape[0]:
        above = values[k + 1]
        for b in range(k + 2, values.shape[0]):
            above = min(above, values[b])
    return below, above


@compiled
def _order_pair_near(values, k, guess, spread, kept):
    """The ``k``-th and ``(k + 1)``-th smallest of ``values`` if the ``k``-th lies within a factor ``spread`` of ``guess``.

    One pass counts the values below the band and copies those inside it to
    ``kept`` (scratch as long as ``values``); only those few are then
    selected among. Returns ``(below, above, inside)``, with ``inside`` -1
    where the ``k``-th is not in the band or a value is NaN (the caller then
    selects among all). ``above`` is ``below`` when ``k`` is the last.
    """
    n = values.shape[0]
    low = guess / spread
    high = guess * spread
    under = 0
    over = 0
    inside = 0
    smallest_over = np.float32(np.inf)
    for b in range(n):
        r = values[b]
        kept[inside] = r
        inside += (r >= low) & (r <= high)
        under += r < low
        is_over = r > high
        over += is_over
        smallest_over = min(smallest_over, r if is_over else np.float32(np.inf))
    position = k - under
    if under + inside + over != n or position < 0 or position >= inside:
        return values[0], values[0], -1
    below, above = _order_pair(kept[:inside], position)
    if position + 1 == inside and k + 1 < n:
        above = smallest_over
    return below, above, inside


@compiled
def _bound_noise(noise, ceiling, reference, drifts, index, fraction, ratios, kept, search):
    """Keep the tracked ``noise`` of a frame under ``ceiling``, raised by the frame's broadband drift if ``drifts``.

    The drift is the quantile (``index`` and ``fraction`` between the order
    statistics ``index`` and ``index + 1``) over bins of ``noise / reference``,
    interpolated as ``numpy.quantile`` does; it only ever raises the ceiling.
    The order statistics are sought first near the last frame's (``search``:
    that value, NaN for none, and the band's spread, adapted as frames come),
    which the tracked noise moves from slowly, then among all bins.
    """
    bins = noise.shape[0]
    one = np.float32(1.0)
    factor = one
    if drifts:
        for b in range(bins):
            ratios[b] = noise[b] / reference[b]
        below, above, inside = _order_pair_near(ratios, index, search[0], search[1], kept)
        if inside < 0:
            if not np.isnan(search[0]):
                search[1] = min(search[1] * search[1], np.float32(1e4))
            below, above = _order_pair(ratios, index)
        elif inside > 64:
            search[1] = max(np.sqrt(search[1]), np.float32(1.0001))
        search[0] = below
        difference = above - below
        if fraction >= 0.5:
            drift = np.float32(np.float64(above) - np.float64(difference) * (1.0 - fraction))
        else:
            drift = np.float32(np.float64(below) + np.float64(difference) * fraction)
        factor = max(drift, one)
    for b in range(bins):
        noise[b] = min(noise[b], ceiling[b] * factor)


@compiled
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


@compiled(fused=True)
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


@compiled
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


@compiled
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


@compiled
def suppression_gains(spectra, parts, gains, apply, rule, tracking, ceiling, smoothing):
    """The gains of ``spectra`` (channels, frames, bins) frame by frame, the state updated in place.

    ``apply`` 0 writes them to ``gains``; 1 multiplies ``spectra`` by them in
    place instead (through ``parts``, its float32 view of shape (channels,
    frames, 2 bins)), 2 by one minus them (the residue), and ``gains`` is
    not used.

    ``rule`` (:class:`Rule`) says how; without ``tracking.on`` the noise is
    ``rule.noise_power``, with it the tracker (:class:`Tracking`) follows it,
    and if ``ceiling.on`` (:class:`Ceiling`) the tracked noise stays under
    its limit. ``smoothing`` (:class:`Smoothing`) smooths the gain.
    """
    channels, n_frames, bins = spectra.shape
    one = np.float32(1.0)
    constants = rule.constants
    scale, floor = constants.scale, constants.floor
    method, noise_power, prior, table, table_first, presence = (
        rule.method, rule.noise_power, rule.prior, rule.table, rule.table_first, rule.presence)
    track, state, ring, counters, subwindow = tracking
    bounded, ceiling_limit, reference, drifts, drift_index, drift_fraction = ceiling
    kernel, time_smoothing, time_state, time_started = smoothing
    power = np.empty(bins, np.float32)
    smoothed_power = np.empty(bins, np.float32)
    tracked = np.empty(bins, np.float32)
    ratios = np.empty(bins, np.float32)
    kept = np.empty(bins, np.float32)
    search = np.empty(2, np.float32)
    noise_floor = np.float32(1e-30)
    gain = np.empty(bins, np.float32)
    wiener = np.empty(bins, np.float32)
    v = np.empty(bins, np.float32)
    padded = np.empty(bins + kernel.shape[0], np.float32)
    start_counters = counters.copy()
    fresh_part = 1.0 - time_smoothing
    plain = kernel.shape[0] == 0 and time_smoothing == 0.0
    for c in range(channels):
        counters[:] = start_counters
        search[0] = np.float32(np.nan)
        search[1] = np.float32(1.05)
        for f in range(n_frames):
            frame = spectra[c, f]
            for b in range(bins):
                z = frame[b]
                power[b] = z.real * z.real + z.imag * z.imag
            if track:
                smooth_bins_into(power, smoothed_power)
                _track_frame(power, smoothed_power, state[c], ring[c], counters,
                             constants.track_smoothing, constants.speech_threshold, constants.noise_keep, subwindow, tracked)
                if bounded:
                    _bound_noise(tracked, ceiling_limit[c], reference[c], drifts, drift_index, drift_fraction, ratios, kept, search)
                for b in range(bins):
                    tracked[b] = max(tracked[b] * scale, noise_floor)
                noise = tracked
            else:
                noise = noise_power[c]
            if method == METHOD_SUBTRACT:
                _berouti(power, noise, constants.alpha, constants.beta, gain)
            elif method == METHOD_LOGMMSE:
                _decision_directed(power, noise, prior[c], constants.dd_smoothing, constants.xi_min, wiener, v)
                _log_mmse(wiener, v, table, table_first, presence, constants.log_prior_odds, floor, constants.log_floor, gain)
            else:
                _decision_directed(power, noise, prior[c], constants.dd_smoothing, constants.xi_min, gain, v)
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


@compiled
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



@compiled(fused=True, reassociated=True)
def gru_steps(projected, recurrent, recurrent_bias, hidden, out):
    """An ONNX GRU (gates z, r, h; ``linear_before_reset``) over a chunk of frames, from ``hidden``, which it updates.

    ``projected`` (frames, 3 size): the input's projection plus its bias;
    ``recurrent`` (3 size, size): the recurrent weights as float16 bits
    (uint16), widened as they are read: 384 KiB at size 256 stay in a core's
    L2 where float32's 768 KiB do not (each step reads them all).
    ``out`` (frames, size) takes the state after each frame. The sigmoid and
    tanh go through :func:`_exp`, so that their loops vectorise.
    """
    rows, size = recurrent.shape
    product = np.empty(rows, np.float32)
    low, high, one = np.float32(-87.0), np.float32(88.0), np.float32(1.0)
    for t in range(projected.shape[0]):
        for j in range(rows):
            total = np.float32(0.0)
            for k in range(size):
                total += _unhalf(recurrent[j, k]) * hidden[k]
            product[j] = total + recurrent_bias[j]
        for j in range(size):
            update = one / (one + _exp(min(max(-(projected[t, j] + product[j]), low), high)))
            reset = one / (one + _exp(min(max(-(projected[t, size + j] + product[size + j]), low), high)))
            doubled = np.float32(-2.0) * (projected[t, 2 * size + j] + reset * product[2 * size + j])
            candidate = np.float32(2.0) / (one + _exp(min(max(doubled, low), high))) - one
            hidden[j] = candidate + update * (hidden[j] - candidate)
            out[t, j] = hidden[j]
