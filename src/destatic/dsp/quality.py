"""DNSMOS P.835: a no-reference estimate of how good speech sounds (SIG, BAK, OVRL, each 1 to 5).

Microsoft's model (Reddy et al., ICASSP 2022), as shipped in the ``speechmos``
wheel (MIT): one ONNX graph that takes 9.01 s of 16 kHz mono audio and
returns raw signal, background and overall scores, mapped to the P.835
scale by the model's published polynomials. Nothing is downloaded; the
graph is read from the installed wheel.

The model scores any background, music included, as noise, so the caller
gives it the voice frames only; and only a bounded number of windows is run,
so the cost does not grow with the file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from destatic.errors import ParameterError

__all__ = ["MAX_WINDOWS", "RATE", "WINDOW_SAMPLES", "SpeechQuality", "dnsmos_available", "speech_quality", "window_starts"]

RATE = 16000
"""Hz: the model's sample rate."""
WINDOW_SAMPLES = round(9.01 * RATE)
"""Samples of one window the model scores."""
MAX_WINDOWS = 1
"""Windows scored per signal at most (their scores averaged): one costs about 0.3 s of CPU."""
_CALIBRATION = {
    "sig": (-0.08397278, 1.22083953, 0.0052439),
    "bak": (-0.13166888, 1.60915514, -0.39604546),
    "ovrl": (-0.06766283, 1.11546468, 0.04602535),
}
"""The model's raw outputs to the P.835 scale: second-order polynomials, highest power first (DNSMOS, not personalised)."""


@dataclass(frozen=True)
class SpeechQuality:
    """DNSMOS P.835 scores of one signal, 1 (bad) to 5 (excellent).

    Attributes
    ----------
    sig : float
        Speech signal quality (distortion of the voice).
    bak : float
        Background intrusiveness (5: none heard).
    ovrl : float
        Overall quality.
    windows : int
        9.01 s windows averaged.
    """

    sig: float
    bak: float
    ovrl: float
    windows: int


def dnsmos_available() -> bool:
    """Whether onnxruntime and the ``speechmos`` wheel (the model) are installed."""
    try:
        _session()
    except (ImportError, FileNotFoundError, ModuleNotFoundError):
        return False
    return True


@functools.cache
def _session():  # type: ignore[no-untyped-def]
    """The model, loaded once per process on one thread (the report runs beside the encoders)."""
    import onnxruntime

    model = resources.files("speechmos").joinpath("dnsmos_models", "sig_bak_ovr.onnx").read_bytes()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def window_starts(samples: int, *, windows: int = MAX_WINDOWS) -> list[int]:
    """Where the windows of a signal of `samples` start: as many as fit, at most `windows`, spread evenly (0 for a short one)."""
    if samples <= WINDOW_SAMPLES:
        return [0]
    count = min(windows, int(np.ceil(samples / WINDOW_SAMPLES)))
    return [int(round(start)) for start in np.linspace(0, samples - WINDOW_SAMPLES, count)]


def speech_quality(audio: np.ndarray, *, windows: int = MAX_WINDOWS) -> SpeechQuality:
    """DNSMOS P.835 scores of 16 kHz mono `audio` (samples in -1..1): the mean over up to `windows` windows.

    A signal shorter than a window is repeated to fill it, as DNSMOS does.

    Raises
    ------
    ParameterError
        `audio` is empty or not one-dimensional.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ParameterError("speech_quality needs a non-empty mono signal")
    if audio.size < WINDOW_SAMPLES:
        audio = np.tile(audio, int(np.ceil(WINDOW_SAMPLES / audio.size)))
    session = _session()
    raw = np.array([
        session.run(None, {"input_1": audio[start:start + WINDOW_SAMPLES][np.newaxis, :]})[0][0]
        for start in window_starts(audio.size, windows=windows)
    ])
    scores = {name: float(np.mean(np.polyval(_CALIBRATION[name], raw[:, column]))) for column, name in enumerate(("sig", "bak", "ovrl"))}
    return SpeechQuality(**scores, windows=len(raw))
