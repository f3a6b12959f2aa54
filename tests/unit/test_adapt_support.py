"""The support gate: the personal head decides only photos whose features lie where its
labels lie, on real features of the fixture photos from the shipped scene network.

Labels are stored as the daemon's upright output would be (re-saved JPEG), as in
``test_adapt_fit.py``. The photos (gcompris, kphotoalbum, tuxtype) and the synthetic
documents are the two kinds of picture; kphotoalbum-00018 is a photo the shipped cascade is
unsure of in every turn.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import stored_upright
from helpers.paths import FIXTURES_DIR
from PIL import Image

from rotwatchd.adapt.fit import (
    FitSettings,
    adapt,
    fallback_cases,
    fit_support,
    folds_of,
    judge,
    kmeans_centroids,
)
from rotwatchd.adapt.labels import LabelSet
from rotwatchd.evaluation.accuracy import Case, upright_images
from rotwatchd.model.base import ModelError
from rotwatchd.model.fusion import load_adaptive
from rotwatchd.model.personal import (
    Head,
    LabelCues,
    PersonalHead,
    Support,
    load_personal,
    model_digest,
    model_path_or_default,
    personal_bytes,
    read_personal,
    shipped_head,
)
from rotwatchd.model.sidecar import ModelMeta

FIXTURES = FIXTURES_DIR / "orientation"
META = ModelMeta.for_model(model_path_or_default(None))
SHIPPED = shipped_head(None, META.temperature)
THRESHOLD = META.threshold("cascade")
UNSURE = "kphotoalbum-00018.jpg"
SETTINGS = FitSettings(min_photos=10, target_risk=0.05, margin=1.0)  # as test_adapt_fit.py


@pytest.fixture(scope="module")
def kinds() -> dict[str, LabelSet]:
    """``photos`` (without the unsure one) and ``documents``, as label sets."""
    cues = LabelCues(None, 1)
    found: dict[str, tuple[list[str], list[np.ndarray], list[np.ndarray]]] = {
        "photos": ([], [], []), "documents": ([], [], [])}
    for group, path in upright_images(FIXTURES):
        if path.name == UNSURE:
            continue
        shas, feats, texts = found["documents" if group == "documents" else "photos"]
        features, text = cues(stored_upright(path))
        shas.append(hashlib.sha256(path.read_bytes()).hexdigest())
        feats.append(features)
        texts.append(text)
    cues.close()
    return {kind: LabelSet(tuple(shas), ("exif",) * len(shas), np.stack(feats), np.stack(texts))
            for kind, (shas, feats, texts) in found.items()}


def _support(labels: LabelSet) -> tuple[Support, np.ndarray]:
    return fit_support(labels.features, folds_of(labels.sha256, SETTINGS.folds), SETTINGS)


def _unsure_turns() -> list[Image.Image]:
    with Image.open(FIXTURES / "kphotoalbum" / UNSURE) as raw:
        image = raw.convert("RGB")
    return [image.rotate(90 * t, expand=True) for t in range(4)]


def test_kmeans_centroids_are_unit_length_seeded_and_bounded() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(5, 1, (40, 8)), rng.normal(-5, 1, (40, 8))])
    c = kmeans_centroids(x, 2)
    assert c.shape == (2, 8) and c.dtype == np.float32
    assert np.allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(c, kmeans_centroids(x, 2))  # seeded: the same every fit
    assert kmeans_centroids(x[:3], 16).shape == (3, 8)  # never more centroids than rows
    with pytest.raises(ValueError):
        kmeans_centroids(x[:0], 2)


def test_the_radius_keeps_the_quantile_of_held_out_labels_inside(
        kinds: dict[str, LabelSet]) -> None:
    photos = kinds["photos"]
    support, inside = _support(photos)
    assert inside.shape == (len(photos),)
    # 21 held-out photos cannot vouch for 99 %: the radius is the largest held-out distance
    assert np.all(inside)
    # 200 photos: the ceil(201 x 0.99) = 199th smallest held-out distance, one photo outside
    many = np.random.default_rng(0).uniform(0, 1, (200, 4, 16)).astype(np.float32)
    _, inside = fit_support(many, np.arange(200) % 3, SETTINGS)
    assert inside.sum() == 199
    assert support.centroids.shape == (max(1, 4 * len(photos) // 20), 1280)
    assert support.contains(photos.features).mean() >= 0.95  # its own labels: inside too


def test_the_gate_keeps_the_personal_head_off_pictures_unlike_its_labels(
        kinds: dict[str, LabelSet]) -> None:
    """A head that says the opposite of the shipped one, fitted (as far as its support goes)
    on documents, does not decide a photo the shipped cascade is unsure of: the shipped
    answer stands, exactly. With a support of photos it decides the same photo."""
    opposite = Head(np.roll(SHIPPED.weight, 2, axis=0), np.roll(SHIPPED.bias, 2))
    adaptive = load_adaptive(None, 1)
    for kind, speaks in (("documents", False), ("photos", True)):
        support, _ = _support(kinds[kind])
        mine = load_personal(None, 1, PersonalHead(opposite, 0.3, THRESHOLD,
                                                   model_digest(None), support))
        for turned in _unsure_turns():
            before, after = adaptive.predict(turned), mine.predict(turned)
            assert before.confidence < THRESHOLD  # the shipped cascade is unsure of it
            where = dict(after.cues)["support"]
            if speaks:
                assert ("personal", 1.0) in after.cues and where <= 1.0
            else:
                assert ("personal", 0.0) in after.cues and where > 1.0
                assert after.correction == before.correction
                assert after.confidence == pytest.approx(before.confidence, abs=1e-6)


def test_the_support_is_saved_and_loaded_with_the_head(kinds: dict[str, LabelSet],
                                                        tmp_path: Path) -> None:
    support, _ = _support(kinds["photos"])
    personal = PersonalHead(SHIPPED, 0.9, THRESHOLD, "d" * 64, support, {"accepted": True})
    path = tmp_path / "personal-head.npz"
    path.write_bytes(personal_bytes(personal))
    loaded = read_personal(path)
    assert loaded is not None
    assert np.array_equal(loaded.support.centroids, support.centroids)
    assert loaded.support.radius == support.radius
    assert np.array_equal(loaded.support.contains(kinds["documents"].features),
                          support.contains(kinds["documents"].features))
    assert loaded.figures == {"accepted": True} and loaded.threshold == 0.9


def test_a_head_saved_without_a_support_reads_as_no_head(tmp_path: Path) -> None:
    path = tmp_path / "personal-head.npz"
    np.savez(path, weight=SHIPPED.weight, bias=SHIPPED.bias, meta=np.frombuffer(json.dumps({
        "threshold": 0.3, "shipped_threshold": THRESHOLD, "model_digest": model_digest(None),
        "figures": {}}).encode(), dtype=np.uint8))
    assert read_personal(path) is None
    np.savez(path, weight=SHIPPED.weight, bias=SHIPPED.bias, centroids=np.zeros((0, 1280)),
             radius=0.5, meta=np.frombuffer(json.dumps({
                 "threshold": 0.3, "shipped_threshold": THRESHOLD,
                 "model_digest": model_digest(None)}).encode(), dtype=np.uint8))
    assert read_personal(path) is None  # an empty support is no support either


def test_a_damaged_head_file_reads_as_no_head(kinds: dict[str, LabelSet],
                                              tmp_path: Path) -> None:
    """Truncated, bit-flipped, empty, a bare array, or meta of another shape: None, never an
    exception (the daemon, ``status`` and ``adapt`` read it at start)."""
    support, _ = _support(kinds["photos"])
    good = personal_bytes(PersonalHead(SHIPPED, 0.9, THRESHOLD, model_digest(None), support))
    path = tmp_path / "personal-head.npz"
    path.write_bytes(good)
    assert read_personal(path) is not None
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    bare = io.BytesIO()
    np.save(bare, np.zeros(3))
    damaged = {"half": good[: len(good) // 2], "tail cut": good[:-10], "empty": b"",
               "bit flipped": bytes(flipped), "bare .npy": bare.getvalue()}
    for meta in ({"shipped_threshold": 0.9, "model_digest": "d"}, [1, 2],
                 {"threshold": "x", "shipped_threshold": 0.9, "model_digest": "d"},
                 {"threshold": 0.9, "shipped_threshold": 0.9, "model_digest": "d",
                  "figures": [1]}):
        buf = io.BytesIO()
        np.savez(buf, weight=SHIPPED.weight, bias=SHIPPED.bias, centroids=support.centroids,
                 radius=support.radius,
                 meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        damaged[f"meta {meta}"] = buf.getvalue()
    buf = io.BytesIO()
    np.savez(buf, weight=SHIPPED.weight[0], bias=SHIPPED.bias, centroids=support.centroids,
             radius=support.radius, meta=np.frombuffer(json.dumps({
                 "threshold": 0.9, "shipped_threshold": 0.9, "model_digest": "d"}).encode(),
                 dtype=np.uint8))
    damaged["1-d weight"] = buf.getvalue()
    for what, data in damaged.items():
        path.write_bytes(data)
        assert read_personal(path) is None, what


def test_a_head_of_another_shape_is_refused_by_the_classifier() -> None:
    odd = PersonalHead(Head(np.zeros((4, 10), np.float32), np.zeros(4)), 0.9, THRESHOLD,
                       model_digest(None), Support(np.ones((1, 10), np.float32), 0.5))
    with pytest.raises(ModelError, match="weights"):
        load_personal(None, 1, odd)


def _cases(right: int, wrong: int, confidence: float, name: str) -> list[Case]:
    return ([Case("exif", 0, 0, confidence, f"{name}-r{i}") for i in range(right)]
            + [Case("exif", 0, 90, confidence, f"{name}-w{i}") for i in range(wrong)])


def test_the_guardrail_simulates_the_gate() -> None:
    """630 cases the shipped head is unsure of (and wrong about); the personal head gets
    600 right and 30 wrong: ungated it adds
    nothing at 0.75 % wrong; with the 30 outside its support they stay the shipped head's
    (unsure: undecided), and the head is accepted for the rest."""
    settings = FitSettings()
    shipped = _cases(0, 600, 0.6, "in") + _cases(0, 30, 0.6, "out")
    personal = _cases(600, 0, 0.99, "in") + _cases(0, 30, 0.99, "out")
    inside = [True] * 600 + [False] * 30
    combined = fallback_cases(personal, shipped, THRESHOLD, inside)
    assert [c.confidence for c in combined[600:]] == [0.0] * 30
    assert combined[:600] == personal[:600]
    ungated = judge(personal, shipped, THRESHOLD, settings, 160)
    gated = judge(personal, shipped, THRESHOLD, settings, 160, inside)
    assert not ungated.accepted
    assert gated.accepted, gated.reason
    assert gated.personal is not None and gated.personal.correct == 600
    assert gated.figures()["support"]["held_out_inside"] == round(600 / 630, 4)
    assert "support" not in ungated.figures()


def test_adapt_returns_the_support_its_verdict_was_judged_with(
        kinds: dict[str, LabelSet]) -> None:
    photos = kinds["photos"]
    result = adapt(photos, SHIPPED, META, SETTINGS)
    assert result.support is not None
    support, inside = _support(photos)
    assert np.array_equal(result.support.centroids, support.centroids)
    assert result.support.radius == support.radius
    figures = result.verdict.figures()["support"]
    assert figures == {"centroids": len(support.centroids),
                       "held_out_inside": round(float(inside.mean()), 4)}
    assert "inside its support" in result.verdict.reason
