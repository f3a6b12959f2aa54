"""The shipped scene network on real held-out images, and its exported variants.

Fixtures: tests/fixtures/orientation holds upright photos and document pages from sources the
network never trained on (kphotoalbum, tuxtype-data, held-out gcompris activities, documents
in held-out fonts); SOURCES.json names package, version and licence of each. reference.json
holds the PyTorch network's predictions on the same inputs (written by
training/fixture_reference.py), so the variant test needs no torch.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import FIXTURES_DIR, REPO_ROOT
from PIL import Image

from rotwatchd.evaluation.accuracy import resave, turned, upright_images
from rotwatchd.model import CORRECTIONS, ModelError, default_model_dir, load_classifier
from rotwatchd.model.litert import runtime_name
from rotwatchd.model.scene import SceneClassifier
from rotwatchd.model.sidecar import MODEL_FILE, ModelMeta

FIXTURES = FIXTURES_DIR / "orientation"
VARIANTS = REPO_ROOT / "bench" / "models"
REFERENCE = json.loads((FIXTURES / "reference.json").read_text())
# Measured on the fixture set with the shipped model when it was exported (see MODEL_CARD.md);
# the floors sit a few cases below the measurement so a real regression fails.
STATED = json.loads((FIXTURES / "stated_accuracy.json").read_text())


def _images() -> list[tuple[str, Image.Image]]:
    out = []
    for _group, path in upright_images(FIXTURES):
        with Image.open(path) as raw:
            out.append((str(path.relative_to(FIXTURES)), raw.convert("RGB")))
    return out


IMAGES = _images()


def _kind(name: str) -> str:
    return "documents" if name.startswith("documents/") else "photos"


@pytest.fixture(scope="module")
def scene() -> Iterator[SceneClassifier]:
    clf = SceneClassifier(threads=1)
    yield clf
    clf.close()


def test_default_model_is_the_shipped_file(scene: SceneClassifier) -> None:
    assert scene.path == default_model_dir() / MODEL_FILE
    assert scene.input_size == ModelMeta.for_model(scene.path).input_size == REFERENCE["input_size"]


def test_shipped_model_accuracy_on_held_out_fixtures(scene: SceneClassifier) -> None:
    """Each fixture turned 4 ways and JPEG re-saved (q 90), as a camera would store it."""
    hits: dict[str, list[bool]] = {"photos": [], "documents": []}
    for name, image in IMAGES:
        kind = _kind(name)
        for truth in CORRECTIONS:
            pred = scene.predict(resave(turned(image, truth), "jpeg", 90))
            hits[kind].append(pred.correction == truth)
    for kind, values in hits.items():
        assert np.mean(values) >= STATED[kind], (kind, np.mean(values))


# tflite-runtime 2.14 (scripts/test-tflite-runtime.sh) runs the dynamic-range file to near-zero
# logits: one reason the weight-only int8 file ships instead. strict: a fixed runtime shows up.
DR_BROKEN = pytest.mark.xfail(runtime_name() == "tflite-runtime", strict=True,
                              reason="tflite-runtime 2.14 computes dynamic-range int8 wrongly")


@pytest.mark.parametrize("variant", ["orientation-f32", pytest.param("orientation-dr",
                                     marks=DR_BROKEN), "orientation-wi8", "orientation-int8"])
def test_variants_agree_with_pytorch(variant: str) -> None:
    clf = SceneClassifier(VARIANTS / f"{variant}.tflite", threads=1)
    by_file = dict(IMAGES)
    agree, max_diff = [], 0.0
    for case in REFERENCE["cases"]:
        logits = clf.logits(turned(by_file[case["file"]], case["truth"]))
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        agree.append(CORRECTIONS[int(np.argmax(probs))] == case["predicted"])
        max_diff = max(max_diff, float(np.abs(probs - np.array(case["probabilities"])).max()))
    clf.close()
    if variant == "orientation-f32":  # same arithmetic up to float rounding
        assert np.mean(agree) >= 0.99 and max_diff < 0.02, (np.mean(agree), max_diff)
    elif variant == "orientation-int8":  # 8-bit weights and activations
        assert np.mean(agree) >= 0.9, np.mean(agree)
    else:  # 8-bit weights, float activations: only borderline cases flip
        assert np.mean(agree) >= 0.97 and max_diff < 0.2, (np.mean(agree), max_diff)


def test_shipped_model_set_fits_the_size_budget() -> None:
    """Every network file the daemon ships, both runtimes' and all cues together, <= 12 MB."""
    files = [f for f in default_model_dir().rglob("*") if f.suffix in (".tflite", ".onnx")]
    assert {f.suffix for f in files} == {".tflite", ".onnx"}
    assert sum(f.stat().st_size for f in files) <= 12 * 1000 * 1000


def test_accuracy_does_not_depend_on_compression_traces() -> None:
    """The default backend (every cue, adaptive) on the fixture photos saved as PNG and as
    JPEG at quality 60-95: the accuracies differ by at most 2 points (1 case of 88), for three
    draws of JPEG qualities. (The one-pass ``litert`` backend, which never escalates, turned
    two near-ties of the 88 the other way on one draw with release 8.4's one-pass text weight:
    fused confidences of 0.49-0.55, which the default escalates.)"""
    clf = load_classifier("auto", None, 1)

    def accuracy(fmt: str, seed: int) -> float:
        rng = random.Random(seed)
        hits = [clf.predict(resave(turned(image, truth), fmt, rng.randint(60, 95))).correction
                == truth for name, image in IMAGES if _kind(name) == "photos"
                for truth in CORRECTIONS]
        return float(np.mean(hits))

    try:
        png = accuracy("png", 0)
        for seed in range(3):
            assert abs(accuracy("jpeg", seed) - png) <= 0.02, (seed, png)
    finally:
        clf.close()


def test_predictions_are_calibrated_probabilities(scene: SceneClassifier) -> None:
    pred = scene.predict(IMAGES[0][1])
    assert abs(sum(pred.probabilities) - 1.0) < 1e-6
    assert pred.confidence == max(pred.probabilities)
    assert pred.correction == CORRECTIONS[pred.probabilities.index(pred.confidence)]


def test_missing_or_broken_model_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        SceneClassifier(tmp_path / "absent.tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelError):
        load_classifier("litert-scene", bad)
    with pytest.raises(ModelError, match="unknown model backend"):
        load_classifier("onnx-nope")
