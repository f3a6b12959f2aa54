"""Translate a small float TFLite convolutional graph (MediaPipe's BlazeFace) to ONNX, op by op.

    python -m training.onnx_export ... --only faces    # uses tflite_to_onnx

The face detectors exist only as ``.tflite`` files (there is no PyTorch or ONNX source), and
no converter in ``[train]`` reads TFLite. This one knows the operators BlazeFace uses
(``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``ADD``, ``RELU``, ``PAD``, ``MAX_POOL_2D``,
``RESHAPE``, ``CONCATENATION``, ``DEQUANTIZE`` of float16 weights) and raises
NotImplementedError naming any other. TFLite computes in NHWC, ONNX convolutions in NCHW: the
input is transposed once, 4-D activations stay NCHW, and a tensor is transposed back to NHWC
only where a ``RESHAPE`` flattens it, so the outputs are exactly the file's. TFLite's
``SAME`` padding becomes explicit ONNX pads (the extra row or column after, as TensorFlow
puts it). The caller checks the result against the TFLite interpreter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}


class _Graph:
    def __init__(self, path: Path) -> None:
        from ai_edge_litert import schema_py_generated as fb

        self.fb = fb
        buf = path.read_bytes()
        self.model = fb.ModelT.InitFromObj(fb.Model.GetRootAs(buf, 0))
        self.sg = self.model.subgraphs[0]
        self.op_names = {v: k for k, v in vars(fb.BuiltinOperator).items()
                         if not k.startswith("_")}
        self.consts: dict[int, np.ndarray] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.nchw: set[int] = set()  # 4-D activations, held NCHW in the ONNX graph

    def name(self, i: int) -> str:
        return f"t{i}"

    def shape(self, i: int) -> list[int]:
        return [int(d) for d in self.sg.tensors[i].shape]

    def const(self, i: int) -> np.ndarray | None:
        if i in self.consts:
            return self.consts[i]
        t = self.sg.tensors[i]
        data = self.model.buffers[t.buffer].data
        if data is None or len(data) == 0:
            return None
        arr = np.frombuffer(bytes(bytearray(data)), _DTYPES[t.type]).reshape(self.shape(i))
        self.consts[i] = arr
        return arr

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, ins: list[str], out: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, ins, [out], name=f"{op}_{len(self.nodes)}",
                                           **attrs))
        return out

    def activation(self, out: str, fused: int) -> str:
        """Apply a fused activation (0 none, 1 relu, 3 relu6) to the node producing ``out``."""
        if fused == 0:
            return out
        raw = out + "_pre"
        self.nodes[-1].output[0] = raw
        if fused == 1:
            return self.node("Relu", [raw], out)
        if fused == 3:
            lo, hi = self.init(out + "_lo", np.float32(0)), self.init(out + "_hi", np.float32(6))
            return self.node("Clip", [raw, lo, hi], out)
        raise NotImplementedError(f"fused activation {fused}")

    def same_pads(self, x: int, out: int, kernel: tuple[int, int], stride: tuple[int, int],
                  padding: int) -> list[int]:
        """ONNX pads [top, left, bottom, right] for TFLite padding (0 SAME, 1 VALID)."""
        if padding == 1:
            return [0, 0, 0, 0]
        (_, h, w, _), (_, oh, ow, _) = self.shape(x), self.shape(out)
        th = max((oh - 1) * stride[0] + kernel[0] - h, 0)
        tw = max((ow - 1) * stride[1] + kernel[1] - w, 0)
        return [th // 2, tw // 2, th - th // 2, tw - tw // 2]


def _op(g: _Graph, op: Any) -> None:
    code = g.model.operatorCodes[op.opcodeIndex]
    kind = g.op_names[max(code.builtinCode, code.deprecatedBuiltinCode)]
    ins, out = [int(i) for i in op.inputs], int(op.outputs[0])
    o = op.builtinOptions
    if kind == "DEQUANTIZE":
        value = g.const(ins[0])
        if value is None:
            raise NotImplementedError("DEQUANTIZE of an activation")
        g.consts[out] = value.astype(np.float32)
        return
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w, b = g.const(ins[1]), g.const(ins[2])
        assert w is not None and b is not None
        if kind == "CONV_2D":  # OHWI -> OIHW
            weight, group = w.transpose(0, 3, 1, 2), 1
        else:  # 1HWC -> C1HW, one group per input channel
            weight, group = w.transpose(3, 0, 1, 2), g.shape(ins[0])[3]
        pads = g.same_pads(ins[0], out, (w.shape[1], w.shape[2]), (o.strideH, o.strideW),
                           o.padding)
        name = g.name(out)
        g.node("Conv", [g.name(ins[0]), g.init(name + "_w", np.ascontiguousarray(weight)),
                        g.init(name + "_b", b.astype(np.float32))], name,
               strides=[o.strideH, o.strideW], pads=pads, group=group,
               kernel_shape=[w.shape[1], w.shape[2]])
        g.activation(name, o.fusedActivationFunction)
        g.nchw.add(out)
        return
    if kind == "MAX_POOL_2D":
        k, s = (o.filterHeight, o.filterWidth), (o.strideH, o.strideW)
        g.node("MaxPool", [g.name(ins[0])], g.name(out), kernel_shape=list(k), strides=list(s),
               pads=g.same_pads(ins[0], out, k, s, o.padding))
        g.activation(g.name(out), o.fusedActivationFunction)
        g.nchw.add(out)
        return
    if kind == "ADD":
        g.node("Add", [g.name(i) for i in ins], g.name(out))
        g.activation(g.name(out), o.fusedActivationFunction)
        if ins[0] in g.nchw:
            g.nchw.add(out)
        return
    if kind == "RELU":
        g.node("Relu", [g.name(ins[0])], g.name(out))
        if ins[0] in g.nchw:
            g.nchw.add(out)
        return
    if kind == "PAD":
        pairs = g.const(ins[1])
        assert pairs is not None and ins[0] in g.nchw
        nchw = pairs[[0, 3, 1, 2]]  # NHWC pairs -> NCHW pairs
        pads = np.concatenate([nchw[:, 0], nchw[:, 1]]).astype(np.int64)
        g.node("Pad", [g.name(ins[0]), g.init(g.name(out) + "_pads", pads)], g.name(out))
        g.nchw.add(out)
        return
    if kind == "RESHAPE":
        src = g.name(ins[0])
        if ins[0] in g.nchw:  # back to TFLite's NHWC element order before flattening
            src = g.node("Transpose", [src], src + "_nhwc", perm=[0, 2, 3, 1])
        shape = np.array(g.shape(out), np.int64)
        g.node("Reshape", [src, g.init(g.name(out) + "_shape", shape)], g.name(out))
        return
    if kind == "CONCATENATION":
        if any(i in g.nchw for i in ins):
            raise NotImplementedError("CONCATENATION of 4-D activations")
        g.node("Concat", [g.name(i) for i in ins], g.name(out), axis=o.axis)
        g.activation(g.name(out), o.fusedActivationFunction)
        return
    raise NotImplementedError(f"TFLite operator {kind} is not supported by tflite_to_onnx")


def tflite_to_onnx(path: Path) -> onnx.ModelProto:
    """The float32 ONNX graph computing what the ``.tflite`` file at ``path`` computes: same
    NHWC input, same outputs in the same order and with the same names.

    Raises NotImplementedError for an operator or layout it does not translate."""
    g = _Graph(path)
    (inp,) = [int(i) for i in g.sg.inputs]
    in_name = g.sg.tensors[inp].name.decode()
    g.node("Transpose", [in_name], g.name(inp), perm=[0, 3, 1, 2])
    g.nchw.add(inp)
    for op in g.sg.operators:
        _op(g, op)
    outputs = []
    for i in (int(i) for i in g.sg.outputs):
        name = g.sg.tensors[i].name.decode()
        g.node("Identity", [g.name(i)], name)
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, g.shape(i)))
    graph = helper.make_graph(
        g.nodes, path.stem,
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, g.shape(inp))],
        outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
