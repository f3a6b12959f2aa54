"""Give the scene network's graph its pooled features as a second output, and save its head.

    python -m training.feature_output models/orientation.tflite

On-device adaptation (``rotwatchd/adapt/fit.py``) learns a personal head on the pooled features
(the input of the final fully-connected layer) of the user's own labelled photos. This tool
edits the flatbuffer, with the schema module that ai-edge-litert ships: the graph's outputs
become ``[logits, features]`` (the logits stay output 0, computed by the same ops from the same
weights, so they are bit-identical; ``tests/unit/test_adapt_model.py`` checks it), and the weights
of that last layer are written to ``<stem>-head.npz`` (``weight_q`` int8 4 x F with a
``scale`` per class, as the graph holds them, and ``bias``): the shipped head the personal one
starts from and is held near.
Running it again on an edited file changes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

FEATURES_NAME = "features"


def _schema():  # type: ignore[no-untyped-def]
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _builtin(model, op) -> int:  # type: ignore[no-untyped-def]
    code = model.operatorCodes[op.opcodeIndex]
    return int(max(code.builtinCode, code.deprecatedBuiltinCode))


def _constant(model, subgraph, index: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A constant tensor as float32, following a DEQUANTIZE op to its int8 source."""
    schema = _schema()
    for op in subgraph.operators:
        if list(op.outputs) == [index] and \
                _builtin(model, op) == schema.BuiltinOperator.DEQUANTIZE:
            index = int(op.inputs[0])
            break
    tensor = subgraph.tensors[index]
    raw = np.asarray(model.buffers[tensor.buffer].data, dtype=np.uint8).tobytes()
    shape = [int(s) for s in tensor.shape]
    if tensor.type == schema.TensorType.FLOAT32:
        return np.frombuffer(raw, dtype=np.float32).reshape(shape).copy()
    if tensor.type != schema.TensorType.INT8:
        raise SystemExit(f"unsupported head weight type {tensor.type}")
    q = tensor.quantization
    values = np.frombuffer(raw, dtype=np.int8).reshape(shape).astype(np.float64)
    scale = np.asarray(q.scale, dtype=np.float64)
    zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], dtype=np.float64)
    axis = int(q.quantizedDimension or 0)
    bshape = [1] * len(shape)
    bshape[axis] = -1
    if scale.size > 1:
        scale, zero = scale.reshape(bshape), zero.reshape(bshape)
    return ((values - zero) * scale).astype(np.float32)


def _inline_buffers(model, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    """Buffers the converter stored after the flatbuffer (``offset``/``size``) become inline
    data, which ``Pack`` writes back (it would drop the offsets' bytes)."""
    for buffer in model.buffers:
        if buffer.offset and buffer.offset > 1:
            chunk = raw[buffer.offset:buffer.offset + buffer.size]
            buffer.data = np.frombuffer(chunk, dtype=np.uint8).copy()
            buffer.offset = buffer.size = 0


def add_feature_output(src: Path, dst: Path) -> tuple[np.ndarray, np.ndarray]:
    """Write ``src`` with the final FC layer's input as output 1 to ``dst``; return the head
    (weight, bias) as float32."""
    import flatbuffers

    schema = _schema()
    raw = src.read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(raw, 0))
    _inline_buffers(model, raw)
    subgraph = model.subgraphs[0]
    logits = int(subgraph.outputs[0])
    fc = next(op for op in subgraph.operators if int(op.outputs[0]) == logits)
    if _builtin(model, fc) != schema.BuiltinOperator.FULLY_CONNECTED:
        raise SystemExit(f"{src}: the logits do not come from a fully-connected layer")
    features = int(fc.inputs[0])
    weight = _constant(model, subgraph, int(fc.inputs[1]))
    bias = _constant(model, subgraph, int(fc.inputs[2]))
    if features not in [int(i) for i in subgraph.outputs]:
        subgraph.outputs = np.asarray([*subgraph.outputs, features], dtype=np.int32)
        for signature in model.signatureDefs or []:
            entry = schema.TensorMapT()
            entry.name = FEATURES_NAME.encode()
            entry.tensorIndex = features
            signature.outputs.append(entry)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(bytes(builder.Output()))
    return weight, bias


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, help="edited model (default: in place)")
    args = parser.parse_args(argv)
    out = args.out or args.model
    weight, bias = add_feature_output(args.model, out)
    head = out.with_name(f"{out.stem}-head.npz")
    # as the graph holds them: int8 with one scale a class (exact, and 6 KB instead of 21:
    # the shipped network files leave less than 10 KB of the 12 MB)
    scale = np.abs(weight).max(axis=1) / 127.0
    weight_q = np.round(weight / scale[:, None]).astype(np.int8)
    if not np.allclose(weight_q * scale[:, None], weight, rtol=0, atol=1e-6):
        np.savez_compressed(head, weight=weight, bias=bias)  # not int8 in the graph
    else:
        np.savez_compressed(head, weight_q=weight_q, scale=scale.astype(np.float32),
                            bias=bias)
    print(f"{out}: outputs [logits, {FEATURES_NAME} ({weight.shape[1]})]; head -> {head}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
