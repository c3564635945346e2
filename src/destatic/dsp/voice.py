"""Voice activity: how likely each 32 ms frame of 16 kHz audio holds speech (Silero VAD v6).

Silero's voice detector (MIT), its "sequence" ONNX export shipped in this
package (``models/``, from the ``silero-vad`` 6.2.3 wheel, whose declared
torch dependency it does not need): one call runs a block of frames, each
frame with the previous 64 samples as context, carrying the recurrent state
from block to block. It tells speech from music, ambience and steady noise,
which an energy threshold cannot, so the quality score
(:mod:`destatic.dsp.quality`) is given voice only and a file of music alone
gets no score.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

from destatic.errors import ParameterError

__all__ = ["FRAME_S", "RATE", "voice_available", "voice_probabilities"]

RATE = 16000
"""Hz: the model's sample rate."""
_FRAME = 512
_CONTEXT = 64
FRAME_S = _FRAME / RATE
"""Seconds of one frame the model judges."""
_BLOCK_FRAMES = 512
"""Frames per model call (16.4 s): one call's memory stays small and the loop short."""
_STATE = 128
_MODEL = "silero_vad_16k_sequence.onnx"
"""The graph in this package's ``models/``, with Silero's MIT licence beside it."""


@functools.cache
def _session():  # type: ignore[no-untyped-def]
    """The model, loaded once per process on one thread."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    model = resources.files(__package__).joinpath("models", _MODEL).read_bytes()
    return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def voice_available() -> bool:
    """Whether the model loads: onnxruntime is installed and the package carries its ``models/`` folder."""
    try:
        _session()
    except (ImportError, FileNotFoundError):
        return False
    return True


def voice_probabilities(audio: np.ndarray) -> np.ndarray:
    """Probability of speech in each :data:`FRAME_S` frame of 16 kHz mono `audio` (the last frame zero-padded).

    Raises
    ------
    ParameterError
        `audio` is not one-dimensional.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ParameterError("voice_probabilities needs a mono signal")
    count = -(-audio.size // _FRAME)
    if count == 0:
        return np.zeros(0, np.float32)
    frames = np.zeros((count, _FRAME), np.float32)
    frames.reshape(-1)[:audio.size] = audio
    contexts = np.zeros((count, _CONTEXT), np.float32)
    contexts[1:] = frames[:-1, -_CONTEXT:]
    windows = np.concatenate((contexts, frames), axis=1)
    session = _session()
    hidden = cell = np.zeros((1, 1, _STATE), np.float32)
    found = []
    for first in range(0, count, _BLOCK_FRAMES):
        probabilities, hidden, cell = session.run(["speech_probs", "hn", "cn"],
                                                  {"input": windows[first:first + _BLOCK_FRAMES], "h": hidden, "c": cell})
        found.append(np.asarray(probabilities, np.float32).reshape(-1))
    return np.concatenate(found)
