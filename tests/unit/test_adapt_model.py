"""The scene graph's features output and the personal head, on the real model and images.

The shipped graph has a second output (the pooled features, training/feature_output.py): the
logits must be exactly those of the same graph without it, and the shipped head saved beside
it must turn those features into the same logits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.paths import FIXTURES_DIR
from PIL import Image

from rotwatchd.evaluation.accuracy import upright_images
from rotwatchd.model.base import default_model_dir
from rotwatchd.model.litert import LiteRTNetwork
from rotwatchd.model.personal import FeatureScene, Head, PersonalHead, Support, shipped_head
from rotwatchd.model.scene import SceneClassifier, preprocess
from rotwatchd.model.sidecar import MODEL_FILE

FIXTURES = FIXTURES_DIR / "orientation"
IMAGES = [path for _group, path in upright_images(FIXTURES)][:8]


def _without_features(tmp_path: Path) -> Path:
    """The shipped graph with its outputs cut back to the logits alone."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    raw = (default_model_dir() / MODEL_FILE).read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(raw, 0))
    assert len(model.subgraphs[0].outputs) == 2
    model.subgraphs[0].outputs = np.asarray(model.subgraphs[0].outputs[:1], dtype=np.int32)
    for signature in model.signatureDefs or []:
        signature.outputs = signature.outputs[:1]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out = tmp_path / "logits-only.tflite"
    out.write_bytes(bytes(builder.Output()))
    return out


def test_the_features_output_leaves_the_logits_bit_identical(tmp_path: Path) -> None:
    plain = LiteRTNetwork(_without_features(tmp_path), 1, "plain")
    shipped = SceneClassifier(threads=1)
    for path in IMAGES:
        with Image.open(path) as raw:
            arr = preprocess(raw.convert("RGB"), shipped.input_size)
        for turns in range(4):
            x = np.ascontiguousarray(np.rot90(arr, turns))[None]
            (expected,) = plain.run(x)
            assert np.array_equal(shipped._run(np.rot90(arr, turns)), expected[0])


def test_the_shipped_head_on_the_features_gives_the_networks_probabilities() -> None:
    scene = SceneClassifier(threads=1)
    features = FeatureScene(threads=1)
    head = shipped_head(None, scene.meta.temperature)
    assert head.weight.shape == (4, 1280)
    for path in IMAGES:
        with Image.open(path) as raw:
            image = raw.convert("RGB")
        arr = preprocess(image, scene.input_size)
        turned = features.turn_features(image)
        for m in range(4):
            expected = scene.view(arr, m)
            assert np.allclose(head.probabilities(turned[m]), expected, atol=1e-5)
            assert np.allclose(FeatureScene(threads=1, head=head).view(arr, m), expected,
                               atol=1e-5)


def test_confidences_are_reported_on_the_shipped_scale() -> None:
    head = Head(np.zeros((4, 3), np.float32), np.zeros(4))
    personal = PersonalHead(head, threshold=0.8, shipped_threshold=0.965, model_digest="x",
                            support=Support(np.ones((1, 3), np.float32) / np.sqrt(3), 1.0))
    mapped = [personal.on_shipped_scale(c) for c in (0.0, 0.4, 0.79, 0.8, 0.9, 1.0)]
    assert mapped[0] == 0.0 and mapped[-1] == pytest.approx(1.0)
    assert mapped[3] == pytest.approx(0.965)  # its own threshold lands on the shipped one
    assert mapped[2] < 0.965 <= mapped[4]
    assert mapped == sorted(mapped)


def test_the_personal_head_never_changes_what_the_shipped_head_is_sure_of() -> None:
    """Even a head that says the opposite of the shipped one (weights rolled by two turns)
    leaves every image the shipped cascade decides exactly as it was; it only speaks for the
    images the shipped cascade would send to review."""
    from rotwatchd.model.fusion import load_adaptive
    from rotwatchd.model.personal import PersonalClassifier, model_digest
    from rotwatchd.model.sidecar import ModelMeta

    meta = ModelMeta.for_model(default_model_dir() / MODEL_FILE)
    shipped = shipped_head(None, meta.temperature)
    opposite = Head(np.roll(shipped.weight, 2, axis=0), np.roll(shipped.bias, 2))
    threshold = meta.threshold("cascade")
    # radius 1: every picture inside (the features are non-negative: cosine distance <= 1)
    everywhere = Support(np.ones((1, 1280), np.float32) / np.sqrt(1280), 1.0)
    personal = PersonalHead(opposite, 0.9, threshold, model_digest(None), everywhere)
    from rotwatchd.model.personal import load_personal

    adaptive, mine = load_adaptive(None, 1), load_personal(None, 1, personal)
    assert isinstance(mine, PersonalClassifier)
    spoke = kept = 0
    for _group, path in upright_images(FIXTURES)[::3]:
        with Image.open(path) as raw:
            image = raw.convert("RGB")
        for turns in range(4):
            turned = image.rotate(90 * turns, expand=True)
            before, after = adaptive.predict(turned), mine.predict(turned)
            if before.confidence >= threshold:
                kept += 1
                assert after.correction == before.correction
                # the same features through the shipped head: equal to float rounding
                assert after.confidence == pytest.approx(before.confidence, abs=1e-6)
                assert ("personal", 0.0) in after.cues
            else:
                spoke += 1
                assert ("personal", 1.0) in after.cues
    assert kept and spoke
