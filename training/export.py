"""Export a checkpoint to the TFLite variants and write the runtime sidecar.

    python -m training.export runs/lite0/last.pt --out bench/models

Writes, with litert-torch and ai-edge-quantizer:
  - ``orientation-f32.tflite``: float32 throughout;
  - ``orientation-dr.tflite``: dynamic-range, int8 weights, activations quantized on the fly;
  - ``orientation-wi8.tflite``: weight-only, int8 weights with an explicit dequantize in front
    of each op, float compute. XNNPACK folds those dequantizes into float weights when the
    model loads, so it is as small as ``dr`` and runs at float32 speed (on x86 the ``dr``
    kernels are slower than float, see bench);
  - ``orientation-int8.tflite``: static int8 weights + activations, calibrated on
    training-split samples (never val or test images).
The graph takes NHWC float input already normalised as (pixel - 127) / 128 and returns logits.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch

from training.augment import SERVE_SIZE, batch, load_pool
from training.net import LiteNet, NHWCWrapper
from training.sources import ROOT


def load_net(ckpt: Path) -> LiteNet:
    net = LiteNet(4)
    net.load_state_dict(torch.load(ckpt, map_location="cpu"))
    return net.eval()


def to_float_tflite(net: LiteNet, size: int, path: Path) -> None:
    import litert_torch

    sample = (torch.zeros(1, size, size, 3),)
    edge = litert_torch.convert(NHWCWrapper(net).eval(), sample)
    edge.export(str(path))


def calibration_samples(data: Path, size: int, count: int, seed: int = 7) -> list[np.ndarray]:
    """Representative inputs: augmented training-split crops in all 4 rotations."""
    rng = random.Random(seed)
    pool = load_pool(data, "train")
    out: list[np.ndarray] = []
    while len(out) < count:
        x, _ = batch(rng, pool, 4, size)
        out.extend(x[i : i + 1] for i in range(len(x)))
    return out[:count]


VARIANTS = ("f32", "dr", "wi8", "int8")


def quantize(float_path: Path, out: Path, calib: list[np.ndarray]) -> None:
    from ai_edge_quantizer import quantizer, recipe

    for name, weights_only in (("dr", recipe.dynamic_wi8_afp32()),
                               ("wi8", recipe.weight_only_wi8_afp32())):
        qt = quantizer.Quantizer(str(float_path))
        qt.load_quantization_recipe(weights_only)
        qt.quantize().export_model(str(out / f"orientation-{name}.tflite"), overwrite=True)

    qt = quantizer.Quantizer(str(float_path))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    sig = qt._signature_runner_names() if hasattr(qt, "_signature_runner_names") else None
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(float_path))
    runner_key = next(iter(interp.get_signature_list()))
    input_name = next(iter(interp.get_signature_list()[runner_key]["inputs"]))
    del sig
    data = {runner_key: [{input_name: x.astype(np.float32)} for x in calib]}
    result = qt.calibrate(data, num_threads=1)
    qt.quantize(result).export_model(str(out / "orientation-int8.tflite"), overwrite=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--size", type=int, default=SERVE_SIZE)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "models")
    p.add_argument("--data", type=Path, default=ROOT / "data")
    p.add_argument("--calib", type=int, default=200)
    p.add_argument("--skip-quant", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    a.out.mkdir(parents=True, exist_ok=True)
    net = load_net(a.checkpoint)
    f32 = a.out / "orientation-f32.tflite"
    to_float_tflite(net, a.size, f32)
    print("wrote", f32, f32.stat().st_size)
    if not a.skip_quant:
        calib = calibration_samples(a.data, a.size, a.calib)
        quantize(f32, a.out, calib)
        for v in VARIANTS[1:]:
            path = a.out / f"orientation-{v}.tflite"
            print("wrote", path, path.stat().st_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
