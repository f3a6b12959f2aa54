"""The guardrail's simulated cascade (``fit.cascade_cases``) decides as the runtime does.

The adaptation guardrail judges a head on what the adaptive backend would answer with it. Here
the simulation is fed exactly the numbers the runtime computes on a real picture (the scene
network's pooled features of the 4 turns of the preprocessed picture, the text network's
probabilities of the 4 turns of its crop): it must then give the runtime's correction and
confidence on every case, including the ones where the first pass is sure enough to skip the
text network (``fusion.skips_text``) and the ones that escalate to 4 passes.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.paths import FIXTURES_DIR
from PIL import Image

from rotwatchd.adapt.fit import cascade_cases
from rotwatchd.adapt.labels import LabelSet
from rotwatchd.evaluation.accuracy import turned, upright_images
from rotwatchd.model.base import CORRECTIONS
from rotwatchd.model.fusion import AdaptiveClassifier, _text_for
from rotwatchd.model.network import LITERT
from rotwatchd.model.personal import FeatureScene, Head, model_path_or_default, shipped_head
from rotwatchd.model.scene import preprocess
from rotwatchd.model.sidecar import ModelMeta

FIXTURES = FIXTURES_DIR / "orientation"
META = ModelMeta.for_model(model_path_or_default(None))
SHIPPED = shipped_head(None, META.temperature)
# a sharper head (as a personal head fitted on the user's photos may be): more sure first passes
SHARPER = Head(SHIPPED.weight * 1.5, SHIPPED.bias * 1.5)


def _pictures() -> list[Image.Image]:
    out = []
    for group, path in upright_images(FIXTURES):
        if group in ("kphotoalbum", "documents", "gcompris-qt-data"):
            with Image.open(path) as raw:
                out.append(raw.convert("RGB"))
    return out


@pytest.mark.parametrize("head", [SHIPPED, SHARPER], ids=["shipped", "sharper"])
def test_the_simulated_cascade_is_the_runtime_on_the_same_numbers(head: Head) -> None:
    text = _text_for(None, 1, LITERT)
    assert text is not None, "the shipped text network is needed here"
    clf = AdaptiveClassifier(FeatureScene(None, 1, head=head), None, text=text)
    scene = clf.scene
    assert isinstance(scene, FeatureScene)
    try:
        runtime, feats, texts = [], [], []
        for picture in _pictures():
            for correction in CORRECTIONS:
                image = turned(picture, correction)
                runtime.append(clf.predict(image))
                arr = preprocess(image, scene.input_size)
                feats.append(np.stack([scene.features(arr, m) for m in range(4)]))
                texts.append(text.views(image, 4))
    finally:
        clf.close()
    n = len(runtime)
    labels = LabelSet(tuple(f"{i:064x}" for i in range(n)), ("exif",) * n, np.stack(feats),
                      np.stack(texts))
    # each picture's case "stored turned 0 times" is the picture as the runtime saw it
    simulated = cascade_cases(head, labels, META)[0::4]
    skipped = [dict(p.cues).get("text") is None for p in runtime]
    escalated = [dict(p.cues)["passes"] == 4.0 for p in runtime]
    assert any(skipped) and not all(skipped) and any(escalated)
    for pred, case in zip(runtime, simulated, strict=True):
        assert case.predicted == pred.correction
        assert case.confidence == pytest.approx(pred.confidence, abs=1e-6)
