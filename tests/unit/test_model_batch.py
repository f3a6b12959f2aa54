"""Several turns of one image run as one batch: the same numbers as one pass each, on every
shipped network and runtime, and a network keeps answering single passes afterwards.
Real models, real fixture photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.paths import FIXTURES_DIR
from PIL import Image

from rotwatchd.model.network import LITERT, Runtime
from rotwatchd.model.personal import FeatureScene
from rotwatchd.model.scene import SceneClassifier, preprocess
from rotwatchd.model.text import TextCue, text_input

PHOTO = FIXTURES_DIR / "faces" / "skagen.jpg"
PAGE = next((FIXTURES_DIR / "orientation" / "documents").glob("*.jpg"))
TURNS = (1, 2, 3)


def _image(path: Path) -> Image.Image:
    with Image.open(path) as raw:
        return raw.convert("RGB")


def _runtimes() -> list[Runtime]:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return [LITERT]
    return [LITERT, Runtime("onnxruntime")]


@pytest.mark.parametrize("runtime", _runtimes(), ids=lambda r: r.name)
def test_scene_turns_in_one_batch_equal_one_pass_each(runtime: Runtime) -> None:
    scene = SceneClassifier(None, 1, runtime=runtime)
    try:
        arr = preprocess(_image(PHOTO), scene.input_size)
        before = scene.view(arr, 0)
        batch = scene.turn_views(arr, TURNS)
        singles = np.stack([scene.view(arr, m) for m in TURNS])
        after = scene.view(arr, 0)  # back to one input after the batch
        again = scene.turn_views(arr, (0, *TURNS))
    finally:
        scene.close()
    assert batch.shape == (3, 4)
    np.testing.assert_array_equal(batch, singles)
    np.testing.assert_array_equal(after, before)
    np.testing.assert_array_equal(again, np.concatenate([before[None], singles]))
    assert not np.allclose(batch[0], batch[1])  # the turns differ: each row is its own pass


@pytest.mark.parametrize("runtime", _runtimes(), ids=lambda r: r.name)
def test_text_network_fixed_to_one_input_answers_a_batch_one_by_one(runtime: Runtime) -> None:
    # the shipped text graph reshapes to batch 1: the batch runs one pass at a time
    text = TextCue(None, 1, runtime=runtime)
    try:
        arr = text_input(_image(PAGE))
        batch = text.turn_views(arr, TURNS)
        singles = np.stack([text.view(arr, m) for m in TURNS])
        batch_again = text.turn_views(arr, (0, *TURNS))
    finally:
        text.close()
    np.testing.assert_array_equal(batch, singles)
    np.testing.assert_array_equal(batch_again[1:], singles)
    assert batch.shape == (3, 4) and np.allclose(batch.sum(axis=1), 1.0)


def test_features_of_turns_in_one_batch_are_each_turns_own() -> None:
    scene = FeatureScene(None, 1)
    try:
        arr = preprocess(_image(PHOTO), scene.input_size)
        batch = scene.features_of(arr, (0, *TURNS))
        singles = np.stack([scene.features(arr, m) for m in (0, *TURNS)])
        scene.memo = {2: singles[2]}
        remembered = scene.remember(arr, (0, *TURNS))  # turn 2 from the memo, 3 passes batched
        kept = dict(scene.memo)
    finally:
        scene.close()
    np.testing.assert_array_equal(batch, singles)
    np.testing.assert_array_equal(remembered, singles)
    assert sorted(kept) == [0, 1, 2, 3]
