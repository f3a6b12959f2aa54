"""Fitting the personal head and the guardrail, on real features of real photos.

The features come from the shipped scene network (``LabelCues``) on the fixture photos, each
stored as the daemon's upright output would be (re-saved JPEG): the same numbers the daemon
collects.
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rotwatchd.adapt import FitSettings, adapt, cascade_cases, fit_head, holdout_mask
from rotwatchd.evaluate import accuracy, upright_images
from rotwatchd.labels import LabelSet
from rotwatchd.model.litert import ModelMeta
from rotwatchd.model.personal import (
    Head,
    LabelCues,
    model_path_or_default,
    shipped_head,
)

FIXTURES = Path(__file__).parent / "fixtures" / "orientation"
META = ModelMeta.for_model(model_path_or_default(None))
SHIPPED = shipped_head(None, META.temperature)
SETTINGS = FitSettings(strength=0.001, holdout=0.35, min_holdout=5)


def _stored(path: Path) -> Image.Image:
    with Image.open(path) as raw:
        im = raw.convert("RGB")
    im.thumbnail((384, 384))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return Image.open(io.BytesIO(buf.getvalue()))


@pytest.fixture(scope="module")
def labels() -> LabelSet:
    cues = LabelCues(None, 1)
    shas, feats, texts = [], [], []
    for _group, path in upright_images(FIXTURES):
        features, text = cues(_stored(path))
        shas.append(hashlib.sha256(path.read_bytes()).hexdigest())
        feats.append(features)
        texts.append(text)
    cues.close()
    return LabelSet(tuple(shas), ("exif",) * len(shas), np.stack(feats), np.stack(texts))


def _wrong(labels: LabelSet) -> LabelSet:
    """Every photo labelled a quarter turn off (what a mislabelling user would teach)."""
    return LabelSet(labels.sha256, labels.source, labels.features[:, [1, 2, 3, 0]],
                    None if labels.text is None else labels.text[:, [1, 2, 3, 0]])


def test_the_shipped_head_in_the_simulated_cascade_is_the_network(labels: LabelSet) -> None:
    cases = cascade_cases(SHIPPED, labels, META)
    assert len(cases) == 4 * len(labels)
    assert accuracy(cases) >= 0.8  # the fixture photos are mostly easy for the network


def test_a_head_trained_on_wrong_labels_is_kept_aside(labels: LabelSet) -> None:
    aside = holdout_mask(labels.sha256, SETTINGS.holdout)
    assert 5 <= aside.sum() < len(labels)
    train = _wrong(labels.subset(~aside))
    bad = fit_head(train.features, SHIPPED, SETTINGS.strength, SETTINGS.iterations)
    assert bad is not None
    # the held-out labels are right: the guardrail judges on them
    mixed = LabelSet(labels.sha256, labels.source,
                     np.where(aside[:, None, None], labels.features,
                              _wrong(labels).features), labels.text)
    result = adapt(mixed, SHIPPED, META, SETTINGS)
    assert not result.verdict.accepted
    assert "kept aside" in result.verdict.reason
    assert result.verdict.personal is not None and result.verdict.shipped is not None
    assert result.verdict.personal.correct < result.verdict.shipped.correct


def test_a_head_trained_on_right_labels_passes_and_fits_them(labels: LabelSet) -> None:
    result = adapt(labels, SHIPPED, META, SETTINGS)
    assert result.verdict.accepted, result.verdict.reason
    assert result.head is not None
    train = labels.subset(~holdout_mask(labels.sha256, SETTINGS.holdout))
    assert accuracy(cascade_cases(result.head, train, META)) >= accuracy(
        cascade_cases(SHIPPED, train, META))


def test_strength_holds_the_head_near_the_shipped_one(labels: LabelSet) -> None:
    wrong = _wrong(labels).features
    loose = fit_head(wrong, SHIPPED, 1e-4, 300)
    tight = fit_head(wrong, SHIPPED, 10.0, 300)
    assert loose is not None and tight is not None

    def moved(head: Head) -> float:
        return float(np.linalg.norm(head.weight - SHIPPED.weight))
    assert moved(tight) < moved(loose) / 10


def test_fitting_5000_labels_takes_under_a_minute_of_one_core() -> None:
    rng = np.random.default_rng(0)
    features = rng.uniform(0, 1.2, (5000, 4, SHIPPED.weight.shape[1])).astype(np.float32)
    # CPU time (the test also holds on a busy machine), of a tenth of the iterations: each
    # costs the same, so the full fit takes ten times that, plus the same set-up
    start = time.process_time()
    head = fit_head(features, SHIPPED, 0.001, FitSettings().iterations // 10)
    assert head is not None
    assert (time.process_time() - start) * 10 < 60


def test_a_fit_stops_when_a_file_arrives(labels: LabelSet) -> None:
    asked = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 3
    assert fit_head(labels.features, SHIPPED, 0.001, 300, cancelled) is None
    assert len(asked) == 4
