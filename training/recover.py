"""Recover a training checkpoint from a float32 export, when the checkpoint itself is gone.

    python -m training.recover bench/models/orientation-f32.tflite --out runs/recovered.pt

The export folds each BatchNorm into the convolution before it (weights scaled, a bias added).
The recovered ``LiteNet`` takes those folded weights and sets every BatchNorm to an exact
identity plus the folded bias (weight 1, bias b, running mean 0, running variance 1 - eps), so
it computes the same function as the file; training freezes BatchNorm statistics anyway. The
check at the end compares PyTorch and TFLite logits on random inputs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.net import BN_EPS, LiteNet


def _constants(path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(op, weight, bias) of every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED, in order."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    out = []
    for op in interp._get_ops_details():
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            _x, w, b = op["inputs"][:3]
            out.append((op["op_name"], interp.get_tensor(w).copy(), interp.get_tensor(b).copy()))
    return out


def _set_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d, op: str, w: np.ndarray,
              b: np.ndarray) -> None:
    # TFLite: CONV_2D weights are OHWI, DEPTHWISE_CONV_2D weights are 1HWC
    weight = w.transpose(0, 3, 1, 2) if op == "CONV_2D" else w.transpose(3, 0, 1, 2)
    if tuple(weight.shape) != tuple(conv.weight.shape):
        raise ValueError(f"{op} weight {w.shape} does not fit {tuple(conv.weight.shape)}")
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
        bn.weight.fill_(1.0)
        bn.bias.copy_(torch.from_numpy(b))
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - BN_EPS)


def recover(path: Path) -> LiteNet:
    consts = iter(_constants(path))
    net = LiteNet(4)
    _set_conv(net._conv_stem, net._bn0, *next(consts))
    for block in net._blocks:
        if block.expand:
            _set_conv(block._expand_conv, block._bn0, *next(consts))
        _set_conv(block._depthwise_conv, block._bn1, *next(consts))
        _set_conv(block._project_conv, block._bn2, *next(consts))
    _set_conv(net._conv_head, net._bn1, *next(consts))
    op, w, b = next(consts)
    if op != "FULLY_CONNECTED" or w.shape != (4, 1280):
        raise ValueError(f"expected the 4-way head, got {op} {w.shape}")
    with torch.no_grad():
        net._fc.weight.copy_(torch.from_numpy(w))
        net._fc.bias.copy_(torch.from_numpy(b))
    if next(consts, None) is not None:
        raise ValueError("more layers in the file than in LiteNet")
    return net.eval()


def max_logit_gap(net: LiteNet, path: Path, size: int, samples: int = 8) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    rng = np.random.default_rng(0)
    gap = 0.0
    for _ in range(samples):
        x = rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        ref = interp.get_tensor(out["index"])[0]
        with torch.no_grad():
            got = net(torch.from_numpy(x).permute(0, 3, 1, 2))[0].numpy()
        gap = max(gap, float(np.abs(got - ref).max()))
    return gap


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model", type=Path, help="a float32 export (orientation-f32.tflite)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    net = recover(a.model)
    from ai_edge_litert.interpreter import Interpreter

    size = int(Interpreter(model_path=str(a.model)).get_input_details()[0]["shape"][1])
    gap = max_logit_gap(net, a.model, size)
    print(f"max |logit difference| PyTorch vs {a.model.name}: {gap:.2e}")
    if gap > 1e-3:
        print("recovered network does not match the file", flush=True)
        return 1
    a.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
