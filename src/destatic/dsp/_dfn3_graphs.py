"""DeepFilterNet3's ONNX graphs edited for :mod:`destatic.dsp.dfn3`'s chunked engine (the ``onnx`` package, imported here only when called).

:func:`edited` replaces each causal convolution's time padding by an input
of its past frames and exposes each GRU's state as an input and an output;
:func:`split` cuts an edited graph around its GRUs, for our own kernel to
run them. Both run once per version of the model and of this code: their
results are kept on disk by :func:`destatic.dsp._dfn3_model.kept_model`.
"""

from __future__ import annotations

import collections
import json
from typing import Any

import numpy as np

from destatic.errors import InternalError

__all__ = ["STATE_KEY", "edited", "grouped_linears_as_matmuls", "split"]

STATE_KEY = "destatic_state"
"""The edited graph's metadata entry naming its state inputs and outputs (JSON: padded, past_frames, hidden)."""


def edited(model_bytes: bytes) -> Any:
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
    grouped_linears_as_matmuls(graph)
    state = {"padded": padded, "past_frames": past_frames, "hidden": hidden}
    model.metadata_props.append(onnx.StringStringEntryProto(key=STATE_KEY, value=json.dumps(state)))
    return model


def grouped_linears_as_matmuls(graph: Any) -> None:
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


def split(model: Any) -> tuple[list[bytes], dict, dict[str, np.ndarray]]:
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
    state = json.loads(next(entry.value for entry in model.metadata_props if entry.key == STATE_KEY))
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
