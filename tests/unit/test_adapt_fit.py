"""Fitting the personal head and the guardrail, on real features of real photos.

The features come from the shipped scene network (``LabelCues``) on the fixture photos, each
stored as the daemon's upright output would be (re-saved JPEG): the same numbers the daemon
collects.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import stored_upright
from helpers.paths import FIXTURES_DIR, REPO_ROOT

from rotwatchd.adapt.fit import FitSettings, adapt, cascade_cases, fit_head, judge
from rotwatchd.adapt.labels import LabelSet
from rotwatchd.evaluation.accuracy import accuracy, upright_images
from rotwatchd.model.personal import (
    Head,
    LabelCues,
    model_path_or_default,
    shipped_head,
)
from rotwatchd.model.sidecar import ModelMeta

FIXTURES = FIXTURES_DIR / "orientation"
META = ModelMeta.for_model(model_path_or_default(None))
SHIPPED = shipped_head(None, META.temperature)
# 28 photos (112 cases) cannot show a 0.5 % error rate: judge these at 5 % without a margin
SETTINGS = FitSettings(min_photos=10, target_risk=0.05, margin=1.0)


@pytest.fixture(scope="module")
def labels() -> LabelSet:
    cues = LabelCues(None, 1)
    shas, feats, texts = [], [], []
    for _group, path in upright_images(FIXTURES):
        features, text = cues(stored_upright(path))
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
    bad = fit_head(_wrong(labels).features, SHIPPED, SETTINGS.strength, SETTINGS.iterations)
    assert bad is not None
    # judged on the right labels of the same photos
    verdict = judge(cascade_cases(bad, labels, META), cascade_cases(SHIPPED, labels, META),
                    META.threshold("cascade"), SETTINGS, len(labels))
    assert not verdict.accepted
    assert verdict.reason.startswith("kept aside:")
    assert verdict.personal is not None and verdict.shipped is not None
    assert verdict.personal.correct < verdict.shipped.correct


def test_each_photo_is_judged_by_a_head_that_never_saw_it(labels: LabelSet) -> None:
    """Wrong labels in one fold: the heads fitted without that fold judge it against them,
    and the heads fitted with them judge the rest; the guardrail sees both."""
    from rotwatchd.adapt.fit import folds_of

    fold = folds_of(labels.sha256, SETTINGS.folds)
    assert sorted(set(fold.tolist())) == [0, 1, 2]
    half_wrong = LabelSet(labels.sha256, labels.source,
                          np.where((fold == 0)[:, None, None], _wrong(labels).features,
                                   labels.features), labels.text)
    result = adapt(half_wrong, SHIPPED, META, SETTINGS)
    right = adapt(labels, SHIPPED, META, SETTINGS)
    assert right.verdict.personal is not None and result.verdict.personal is not None
    assert result.verdict.personal.correct < right.verdict.personal.correct


def test_a_head_trained_on_right_labels_passes_and_fits_them(labels: LabelSet) -> None:
    result = adapt(labels, SHIPPED, META, SETTINGS)
    assert result.verdict.accepted, result.verdict.reason
    assert result.head is not None
    assert result.verdict.held_out == len(labels)  # every photo held out once
    assert accuracy(cascade_cases(result.head, labels, META)) >= accuracy(
        cascade_cases(SHIPPED, labels, META))


def test_too_few_labels_are_not_fitted(labels: LabelSet) -> None:
    few = labels.subset(np.arange(len(labels)) < 5)
    result = adapt(few, SHIPPED, META, SETTINGS)
    assert result.head is None and not result.verdict.accepted
    assert result.verdict.reason == "not fitted: only 5 labelled photos (need 10)"
    one = adapt(labels.subset(np.arange(len(labels)) < 1), SHIPPED, META, SETTINGS)
    assert one.verdict.reason == "not fitted: only 1 labelled photo (need 10)"


def test_strength_holds_the_head_near_the_shipped_one(labels: LabelSet) -> None:
    wrong = _wrong(labels).features
    loose = fit_head(wrong, SHIPPED, 1e-4, 300)
    tight = fit_head(wrong, SHIPPED, 10.0, 300)
    assert loose is not None and tight is not None

    def moved(head: Head) -> float:
        return float(np.linalg.norm(head.weight - SHIPPED.weight))
    assert moved(tight) < moved(loose) / 10


_ONE_CORE_FIT = """
import time, numpy as np
from rotwatchd.adapt.fit import FitSettings, fit_head
from rotwatchd.model.personal import shipped_head
prior = shipped_head(None, 1.0)
rng = np.random.default_rng(0)
features = rng.uniform(0, 1.2, (5000, 4, prior.weight.shape[1])).astype(np.float32)
start = time.process_time()
assert fit_head(features, prior, 0.003, FitSettings().iterations // 10) is not None
print(time.process_time() - start)
"""


def test_fitting_5000_labels_takes_under_a_minute_of_one_core() -> None:
    """CPU time (it holds on a busy machine) with one BLAS thread, of a tenth of the
    iterations: each costs the same, so a full fit takes ten times that."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", _ONE_CORE_FIT], env=env, check=True,
                         capture_output=True, text=True, timeout=110).stdout
    assert float(out.split()[-1]) * 10 < 60


def test_a_fit_stops_when_a_file_arrives(labels: LabelSet) -> None:
    asked = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 3
    assert fit_head(labels.features, SHIPPED, 0.001, 300, cancelled) is None
    assert len(asked) == 4
