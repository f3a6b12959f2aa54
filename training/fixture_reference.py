"""Store the PyTorch model's predictions on the fixture set, for the variant agreement test.

    python -m training.fixture_reference runs/lite0/final.pt

For every image in tests/fixtures/orientation and every correction (exact transposes, no
re-encoding) the input is built with the runtime's own ``preprocess`` and run through the
PyTorch network; probabilities (temperature 1) and the predicted class go to
tests/fixtures/orientation/reference.json, so the test needs no torch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch
from PIL import Image

from rotwatchd.evaluation.accuracy import turned, upright_images
from rotwatchd.model.base import CORRECTIONS
from rotwatchd.model.scene import preprocess
from training.augment import SERVE_SIZE
from training.export import load_net
from training.sources import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "orientation"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--size", type=int, default=SERVE_SIZE)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    net = load_net(a.checkpoint)
    cases = []
    for _group, path in upright_images(FIXTURES):
        with Image.open(path) as raw:
            im = raw.convert("RGB")
        for corr in CORRECTIONS:
            x = torch.from_numpy(preprocess(turned(im, corr), a.size)).permute(2, 0, 1)[None]
            with torch.no_grad():
                probs = torch.softmax(net(x), dim=-1)[0]
            cases.append({"file": str(path.relative_to(FIXTURES)), "truth": corr,
                          "predicted": CORRECTIONS[int(probs.argmax())],
                          "probabilities": [round(float(v), 5) for v in probs]})
    digest = hashlib.sha256(a.checkpoint.read_bytes()).hexdigest()[:16]
    out = {"checkpoint_sha256_16": digest, "input_size": a.size, "cases": cases,
           "accuracy": sum(c["truth"] == c["predicted"] for c in cases) / len(cases)}
    (FIXTURES / "reference.json").write_text(json.dumps(out, indent=0) + "\n")
    print(f"{len(cases)} cases, PyTorch accuracy {out['accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
