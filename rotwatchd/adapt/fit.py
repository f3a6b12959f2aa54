"""On-device adaptation: fit a personal scene head on the user's labels, behind a guardrail.

Pure numpy, no I/O (the label store, the scheduling and the files live in
``rotwatchd/adapt/runtime.py``).

* **Examples.** Each label holds the pooled features of the upright photo turned 0..3 times;
  view m is an example of class m (turned m times), so a photo gives four exact examples.
* **Fit** (:func:`fit_head`): multinomial logistic regression over the four turns, started
  from the shipped head and L2-regularised toward it (``strength``), so a few odd labels cannot
  take it over: mean cross-entropy + strength/2 * |W - W_shipped|^2. Nesterov-accelerated
  gradient descent with the step from the Lipschitz bound, a fixed number of iterations;
  ``cancelled()`` is asked between iterations (a file arrived: stop at once).
* **Guardrail** (:func:`judge`): labels are split into ``folds`` by their content hash (a
  photo stays in its fold from one fit to the next); each fold is held out once and judged by
  a head fitted on the others, so every labelled photo is a held-out case exactly once. The
  held-out photos go through the same cascade the daemon runs (:func:`cascade_cases`: one
  pass fused with the text cue, the 4-pass ensemble when one pass is unsure, the thresholds
  and weights of the model's sidecar; the face cue is left out: it is not stored), once with
  the shipped head and once with the personal ones. The shipped head's own threshold there is
  the lowest whose wrong-among-decided, counting one more wrong case than seen, is at most
  ``margin`` x ``target_risk``. The personal head's is the lowest of the grid at which two
  rules hold (:func:`bounded_operating`):

  - *every* decision, the shipped head's where it is sure and the personal head's elsewhere
    (as the daemon combines them, :func:`fallback_cases`): the one-sided Clopper-Pearson upper
    bound, at ``confidence`` (95 %), of the wrong-among-decided rate is at most
    ``target_risk`` (C. J. Clopper and E. S. Pearson, "The use of confidence or fiducial
    limits illustrated in the case of the binomial", Biometrika 26, 1934; the bound Y. Geifman
    and R. El-Yaniv use to certify a selective classifier's risk, "Selective classification
    for deep neural networks", NeurIPS 2017). The point estimate is what a few hundred photos
    cannot vouch for: 0 errors in 150 decided cases still allow 2 % (:func:`risk_upper_bound`);
  - the personal head's *own* decisions (the cases the shipped cascade is unsure of, the only
    ones it will decide): wrong among them, counting one more wrong case than seen, at most
    ``margin`` x ``target_risk``, so that a user whose labels the shipped head already
    decides cannot give it a threshold no picture of its own would justify (a documents
    user's head otherwise got threshold 0.3, then decided other pictures at 11.8 % wrong).

  The bound treats the cases as independent; the 4 turns of one photo are not (an ambiguous
  photo tends to be wrong in several turns), so it understates the uncertainty. The head
  fitted on every label is used only if the held-out personal heads decide at least as many
  cases correctly there as the shipped head does at its own threshold, and then with that
  recalibrated threshold. Otherwise it is kept aside, and the verdict says why.
* **Support** (:func:`fit_support`): the guardrail only ever sees the user's own kind of
  photo, so it cannot vouch for the personal head on any other (a head fitted on 300 photos
  of hands got threshold 0.3 and then decided food, documents and rooms at 11 % wrong). The
  head may therefore only decide photos whose features lie where its labels lie: each of
  the photo's 4 turns within ``radius`` (cosine distance of the square-rooted,
  L2-normalised features, ``support_rows``) of one of k centroids found by spherical k-means
  over the labels' features of all 4 turns (later photos arrive in any turn),
  k = min(``support_centroids``, max(1, views // ``views_per_centroid``)): 60 for 300
  labels. The radius is the ``support_quantile`` (q = 0.99) split-conformal quantile of the
  n *held-out* photo distances (the largest of the 4 turns'): each fold's photos measured
  against centroids fitted without that fold (the guardrail's folds); the ceil((n + 1) q)-th
  smallest, so that a later photo of the same kind falls inside with probability at least
  q: about 1 % of the user's own later photos fall outside (with fewer than 99 labelled
  photos no finite radius vouches for that: the largest held-out distance then).
  A photo's 4 turns rather than the one view as it arrived: on the
  label features of the benchmark's users (``bench/bench_adapt.py``), a support of 300 hand
  photos held 15 % of clothing photos' and 10 % of screenshots' views one view at a time,
  and 1 % and 0 % of those photos on all 4 turns, at the same 99 % of held-out hands.
  This is selective prediction restricted to the training distribution: a novelty reject
  option ahead of the classifier's own (C. K. Chow, "On optimum recognition error and
  reject tradeoff", IEEE Trans. Inf. Theory 16, 1970, for the reject option); the quantile
  of held-out scores is the split-conformal threshold (V. Vovk, A. Gammerman and G. Shafer,
  "Algorithmic Learning in a Random World", 2005). The guardrail's held-out simulation
  applies the same gate: a held-out photo outside its fold's support keeps the shipped
  head's answer, so its figures are what the daemon will do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rotwatchd.adapt.labels import LabelSet
from rotwatchd.evaluation.accuracy import Case, RiskRow, risk_coverage
from rotwatchd.model.base import CORRECTIONS
from rotwatchd.model.fusion import FusionParams, escalates, fuse, skips_text, weights
from rotwatchd.model.personal import Head, Support, support_rows, unit_rows
from rotwatchd.model.scene import as_probs, tta_average
from rotwatchd.model.sidecar import ModelMeta

#: Thresholds searched on the held-out slice: coarse, then finer towards 1.
THRESHOLD_GRID: tuple[float, ...] = tuple(
    sorted({round(float(t), 3) for t in np.arange(0.3, 0.996, 0.005)}
           | {round(1.0 - float(e), 5) for e in np.geomspace(4e-3, 1e-5, 16)}))


@dataclass(frozen=True)
class FitSettings:
    strength: float = 0.003  # L2 pull toward the shipped head
    iterations: int = 300
    folds: int = 3  # each photo is held out once, judged by a head fitted without it
    target_risk: float = 0.01  # wrong among decided the daemon must keep to
    # the held-out estimate must show at most this share of the target, counting one more
    # wrong case than it saw: labels flatter later photos (measured in bench/bench_adapt.py)
    margin: float = 0.75
    # every held-out decision: the Clopper-Pearson upper bound at this level <= target_risk
    confidence: float = 0.95
    min_photos: int = 30  # fewer labelled photos and there is nothing to judge on
    # the support gate (see the module docstring)
    support_quantile: float = 0.99  # of held-out distances: ~1 % of the user's photos outside
    # at most (memory k x 1280 float32: 320 KiB); on the cached label features of 5 simulated
    # users, 64 rather than 16 centroids let 10 % rather than 16 % of screenshots' views into
    # a support of hand photos, at the same 99 % of the user's own (bench/bench_adapt.py)
    support_centroids: int = 64
    views_per_centroid: int = 20


def examples(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4, F) features of upright photos -> X (4N, F), y (4N,): view m is class m.
    X is a view of ``features`` when they are float32 already (no copy)."""
    n, turns, dim = features.shape
    x = features.reshape(n * turns, dim).astype(np.float32, copy=False)
    y = np.tile(np.arange(turns), n)
    return x, y


def _lipschitz(x: np.ndarray, iterations: int = 12) -> float:
    """Largest eigenvalue of [X 1]^T [X 1] / n, bounded by that of X^T X / n (power
    iteration, a little over-estimated so the step stays safe) plus 1 for the bias."""
    v = np.ones(x.shape[1], dtype=x.dtype) / np.sqrt(x.shape[1])  # float32: no copy of X
    value = 1.0
    for _ in range(iterations):
        w = x.T @ (x @ v) / len(x)
        value = float(np.linalg.norm(w))
        v = (w / max(value, 1e-12)).astype(x.dtype)
    return value * 1.05 + 1.0


def fit_head(features: np.ndarray, prior: Head, strength: float, iterations: int = 300,
             cancelled: Callable[[], bool] | None = None) -> Head | None:
    """The personal head for (N, 4, F) upright-photo features, regularised toward ``prior``.
    Memory: the features and a (4N, 4) array; no copy of the features.

    Returns None when ``cancelled()`` became true (checked between iterations)."""
    x, y = examples(features)
    onehot = np.eye(4, dtype=np.float32)[y]
    w0, b0 = prior.weight.astype(np.float32), prior.bias.astype(np.float32)
    # softmax cross-entropy has curvature at most 1/2 |[x 1]|^2 per example
    step = 1.0 / (0.5 * _lipschitz(x) + strength)
    w, b, w_prev, b_prev = w0.copy(), b0.copy(), w0.copy(), b0.copy()
    for k in range(iterations):
        if cancelled is not None and cancelled():
            return None
        momentum = k / (k + 3.0)  # Nesterov
        look_w, look_b = w + momentum * (w - w_prev), b + momentum * (b - b_prev)
        z = x @ look_w.T + look_b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        p -= onehot
        grad_w = p.T @ x / len(x) + strength * (look_w - w0)
        grad_b = p.mean(axis=0) + strength * (look_b - b0)
        w_prev, b_prev = w, b
        w = (look_w - step * grad_w).astype(np.float32)
        b = (look_b - step * grad_b).astype(np.float32)
    return Head(w, b.astype(np.float64))


def folds_of(sha256: Sequence[str], folds: int) -> np.ndarray:
    """The held-out fold of each label, by content hash: a photo stays in its fold."""
    return np.array([int(h[:8], 16) % folds for h in sha256], dtype=np.int64)


_PARAMS = FusionParams()


def cascade_cases(head: Head, labels: LabelSet, meta: ModelMeta,
                  params: FusionParams = _PARAMS) -> list[Case]:
    """Each labelled photo stored turned each of the 4 ways, decided as the adaptive backend
    would (scene with ``head``, text cue when stored, no face cue)."""
    one, four = weights(meta, 1, params), weights(meta, 4, params)
    probs = head.probabilities(labels.features)  # (N, 4 views, 4 classes)
    cases = []
    for i in range(len(labels)):
        for turned in range(4):  # stored turned `turned` times: its view m is view turned+m
            order = [(turned + m) % 4 for m in range(4)]
            text = None if labels.text is None else labels.text[i, order]
            fused = fuse(as_probs(probs[i, order[0]]), None, one)
            if text is not None and not skips_text(fused.confidence, meta.min_confidence):
                fused = fuse(as_probs(probs[i, order[0]]), None, one, as_probs(text[0]))
            if escalates(fused.confidence, meta.escalate_from, meta.min_confidence):
                fused = fuse(as_probs(tta_average(probs[i, order])), None, four,
                             None if text is None else as_probs(tta_average(text)))
            cases.append(Case(labels.source[i], CORRECTIONS[turned], fused.correction,
                              fused.confidence, labels.sha256[i]))
    return cases


def fallback_cases(personal: Sequence[Case], shipped: Sequence[Case],
                   shipped_threshold: float, inside: Sequence[bool] | None = None) -> list[Case]:
    """The same cases decided as ``PersonalClassifier`` does: the shipped head's answer where
    it is sure (confidence 1 here: decided at any threshold), the personal head's elsewhere
    when the case lies inside its support (``inside``, one flag a case; None: all inside),
    and the shipped head's unsure answer outside it (confidence 0 here: never decided)."""
    flags = [True] * len(shipped) if inside is None else list(inside)
    return [replace(s, confidence=1.0) if s.confidence >= shipped_threshold
            else p if within else replace(s, confidence=0.0)
            for p, s, within in zip(personal, shipped, flags, strict=True)]


def kmeans_centroids(x: np.ndarray, k: int, seed: int = 0, iterations: int = 25) -> np.ndarray:
    """Spherical k-means of the (N, F) rows ``x`` (scaled to unit length here): (min(k, N), F)
    float32 centroids of unit length, seeded k-means++ start, ``iterations`` Lloyd steps (a
    cluster left empty keeps its centroid). Memory: x as float32 and an (N, k) array.

    Raises ValueError when ``x`` has no rows."""
    if len(x) == 0:
        raise ValueError("no features to describe")
    x = unit_rows(x)
    rng = np.random.default_rng(seed)
    k = max(1, min(k, len(x)))
    centroids = [x[int(rng.integers(len(x)))]]
    gap = 1.0 - x @ centroids[0]
    for _ in range(1, k):
        weight = np.maximum(gap, 0.0) ** 2
        total = float(weight.sum())
        pick = int(rng.choice(len(x), p=weight / total)) if total > 0 else int(
            rng.integers(len(x)))
        centroids.append(x[pick])
        gap = np.minimum(gap, 1.0 - x @ x[pick])
    c = np.stack(centroids).astype(np.float32)
    for _ in range(iterations):
        nearest = np.argmax(x @ c.T, axis=1)
        sums = np.zeros_like(c)
        np.add.at(sums, nearest, x)
        filled = np.linalg.norm(sums, axis=1) > 0
        c[filled] = unit_rows(sums[filled])
    return c


def support_centroids(features: np.ndarray, settings: FitSettings) -> np.ndarray:
    """(N, 4, F) label features -> the support's (k, F) centroids over every turn, k =
    min(``support_centroids``, max(1, 4N // ``views_per_centroid``))."""
    views = support_rows(features.reshape(-1, features.shape[-1]))
    k = min(settings.support_centroids, max(1, len(views) // settings.views_per_centroid))
    return kmeans_centroids(views, k)


def fit_support(features: np.ndarray, fold: np.ndarray,
                settings: FitSettings) -> tuple[Support, np.ndarray]:
    """The support of (N, 4, F) label features, and (N,) bool: whether each held-out photo
    lies inside its fold's support (centroids fitted without that fold; ``fold`` as
    :func:`folds_of`). The radius is the split-conformal ``support_quantile`` quantile of
    those held-out photo distances (see the module docstring); the centroids are fitted on
    every label."""
    held = np.zeros(len(features), dtype=np.float64)
    for k in np.unique(fold):
        if np.all(fold == k):  # one fold only: nothing held out against
            held[:] = 0.0
            break
        c = support_centroids(features[fold != k], settings)
        held[fold == k] = Support(c, 0.0).photo_distance(features[fold == k])
    rank = min(len(held), math.ceil((len(held) + 1) * settings.support_quantile))
    radius = float(np.sort(held)[rank - 1])
    return Support(support_centroids(features, settings), radius), held <= radius


@dataclass(frozen=True)
class Operating:
    """A head at its threshold on a set of cases: ``correct`` decided correctly, ``wrong``
    decided wrongly, of ``cases``."""

    threshold: float
    cases: int
    correct: int
    wrong: int

    @property
    def risk(self) -> float:
        decided = self.correct + self.wrong
        return self.wrong / decided if decided else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "cases": self.cases, "decided_correct":
                round(self.correct / max(1, self.cases), 4), "wrong_among_decided":
                round(self.risk, 4)}


def at_threshold(cases: Sequence[Case], threshold: float) -> Operating:
    row: RiskRow = risk_coverage(cases, [threshold])[0]
    decided = round(row.coverage * len(cases))
    correct = round(row.decided_correct * len(cases))
    return Operating(threshold, len(cases), correct, decided - correct)


def best_operating(cases: Sequence[Case], target_risk: float, pseudo: int = 0) -> Operating:
    """The lowest grid threshold whose wrong-among-decided, counting ``pseudo`` more wrong
    cases than seen, is at most ``target_risk`` (the highest of the grid when none is)."""
    n = len(cases)
    for row in risk_coverage(cases, THRESHOLD_GRID):
        decided = round(row.coverage * n)
        wrong = decided - round(row.decided_correct * n)
        if decided and (wrong + pseudo) / (decided + pseudo) <= target_risk:
            return at_threshold(cases, row.threshold)
    return at_threshold(cases, 1.0)  # none: decide (almost) nothing


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed term by term in log space (exact enough for n
    in the tens of thousands; k is small where it is asked)."""
    if k >= n or p <= 0.0:
        return 1.0
    if k < 0 or p >= 1.0:
        return 0.0
    lp, lq, top = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    terms = (math.exp(top - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
             for i in range(k + 1))
    return min(1.0, math.fsum(terms))


def risk_upper_bound(wrong: int, decided: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound at ``confidence`` on the rate behind ``wrong`` of
    ``decided`` cases: the largest p with P(X <= wrong | decided, p) >= 1 - confidence (60
    bisection steps). 1.0 when nothing is decided.

    Raises ValueError when ``0 <= wrong <= decided`` or ``0 < confidence < 1`` does not hold."""
    if not 0 <= wrong <= decided or not 0.0 < confidence < 1.0:
        raise ValueError(f"no bound for {wrong} wrong of {decided} at {confidence}")
    if wrong == decided:
        return 1.0
    low, high = wrong / decided, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        if binomial_cdf(wrong, decided, mid) > 1.0 - confidence:
            low = mid
        else:
            high = mid
    return high


def within_risk(wrong: int, decided: int, target: float, confidence: float) -> bool:
    """Whether ``risk_upper_bound(wrong, decided, confidence) <= target``, without the
    bisection: the bound is at most ``target`` exactly when P(X <= wrong | decided, target)
    <= 1 - confidence. False when nothing is decided."""
    if decided <= 0 or wrong > target * decided:  # the bound is above the point estimate
        return False
    return binomial_cdf(wrong, decided, target) <= 1.0 - confidence


def _counts(row: RiskRow, n: int) -> tuple[int, int]:
    decided = round(row.coverage * n)
    return decided, decided - round(row.decided_correct * n)


def bounded_threshold(own: Sequence[Case], every: Sequence[Case], settings: FitSettings) -> float:
    """The lowest grid threshold at which ``every`` decision (the daemon's combination,
    :func:`fallback_cases`) has a Clopper-Pearson upper bound at ``settings.confidence`` of
    at most ``settings.target_risk`` wrong among decided, and the personal head's ``own``
    decisions, counting one more wrong case than seen, at most ``margin`` x ``target_risk``
    (see the module docstring). 1.0 when no threshold of the grid meets both."""
    own_rows = risk_coverage(own, THRESHOLD_GRID)
    every_rows = risk_coverage(every, THRESHOLD_GRID)
    for own_row, every_row in zip(own_rows, every_rows, strict=True):
        decided, wrong = _counts(own_row, len(own))
        if not decided or (wrong + 1) / (decided + 1) > settings.margin * settings.target_risk:
            continue
        decided, wrong = _counts(every_row, len(every))
        if within_risk(wrong, decided, settings.target_risk, settings.confidence):
            return own_row.threshold
    return 1.0


@dataclass(frozen=True)
class Verdict:
    """The guardrail's answer: ``accepted``, ``reason`` (one line) and the figures."""

    accepted: bool
    reason: str
    shipped: Operating | None
    personal: Operating | None
    trained_on: int
    held_out: int
    #: the support gate: its centroids and the share of held-out cases inside it (None: no
    #: gate was simulated)
    support_centroids: int = 0
    inside: float | None = None

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"accepted": self.accepted, "reason": self.reason,
                               "labels_trained": self.trained_on,
                               "labels_held_out": self.held_out}
        if self.shipped is not None and self.personal is not None:
            out["shipped"] = self.shipped.as_dict()
            out["personal"] = self.personal.as_dict()
        if self.inside is not None:
            out["support"] = {"centroids": self.support_centroids,
                              "held_out_inside": round(self.inside, 4)}
        return out


def judge(personal: Sequence[Case], shipped: Sequence[Case], shipped_threshold: float,
          settings: FitSettings, photos: int, inside: Sequence[bool] | None = None) -> Verdict:
    """Compare, on the same held-out cases, the shipped head alone at its own best threshold
    with the combination the daemon would run (``fallback_cases``): the shipped head where it
    is sure (``shipped_threshold``), the personal head elsewhere, at :func:`bounded_threshold`:
    every decision's Clopper-Pearson bound within ``target_risk``, and the personal head's
    *own* decisions within the margin (so that a user whose labels the shipped head already
    decides cannot give it a threshold no other picture would justify).
    ``personal`` and ``shipped`` are the same cases in the same order; ``inside`` flags the
    cases inside the personal head's support (None: all): only those may it decide."""
    target = settings.target_risk * settings.margin
    before = best_operating(shipped, target, pseudo=1)
    flags = [True] * len(shipped) if inside is None else list(inside)
    unsure = [p for p, s, within in zip(personal, shipped, flags, strict=True)
              if s.confidence < shipped_threshold and within]
    combined = fallback_cases(personal, shipped, shipped_threshold, flags)
    threshold = bounded_threshold(unsure, combined, settings)
    own, after = at_threshold(unsure, threshold), at_threshold(combined, threshold)
    bound = risk_upper_bound(after.wrong, after.correct + after.wrong, settings.confidence)
    gate = ("" if inside is None else f"; {sum(flags) / max(1, len(flags)):.1%} of the cases "
            "inside its support")
    figures = (f"{photos} held-out photos x 4 turns: decided correctly, shipped "
               f"{before.correct} (threshold {before.threshold:g}: <= {target:.2%} wrong, +1), "
               f"with the personal head {after.correct} (threshold {threshold:g}: it decides "
               f"{own.correct + own.wrong} of the {len(unsure)} the shipped head is unsure of, "
               f"{own.wrong} wrong; {after.wrong} wrong of all {after.correct + after.wrong} "
               f"decided, {settings.confidence:.0%} upper bound {bound:.2%}{gate})")
    share = None if inside is None else sum(flags) / max(1, len(flags))
    if own.correct == 0:
        return Verdict(False, "kept aside: it adds nothing the shipped head decides; "
                       + figures, before, after, photos, photos, inside=share)
    if after.correct < before.correct or after.risk > settings.target_risk:
        return Verdict(False, "kept aside: it decides fewer correctly than the shipped head; "
                       + figures, before, after, photos, photos, inside=share)
    return Verdict(True, "in use: " + figures, before, after, photos, photos, inside=share)


@dataclass(frozen=True)
class Adapted:
    """What :func:`adapt` made: the fitted head (None when cancelled or too few labels), its
    recalibrated threshold, the guardrail's verdict and the support the head may decide in
    (None with no head)."""

    head: Head | None
    threshold: float
    verdict: Verdict
    seconds: float
    support: Support | None = None


def adapt(labels: LabelSet, shipped: Head, meta: ModelMeta, settings: FitSettings = FitSettings(),
          cancelled: Callable[[], bool] | None = None) -> Adapted:
    """Judge heads fitted without each fold on that fold, then fit on every label (see the
    module docstring). Only an ``Adapted`` whose ``verdict.accepted`` may be used."""
    import time

    start = time.process_time()
    n = len(labels)
    if n < settings.min_photos:
        reason = (f"not fitted: only {n} labelled photo{'' if n == 1 else 's'} "
                  f"(need {settings.min_photos})"
                  if n else "not fitted: no labels to learn from")
        return Adapted(None, 1.0, Verdict(False, reason, None, None, n, n), 0.0)
    fold = folds_of(labels.sha256, settings.folds)
    held_out: list[Case] = []
    for k in range(settings.folds):
        head = fit_head(labels.subset(fold != k).features, shipped, settings.strength,
                        settings.iterations, cancelled)
        if head is None:
            break
        held_out += cascade_cases(head, labels.subset(fold == k), meta)
    else:
        head = fit_head(labels.features, shipped, settings.strength, settings.iterations,
                        cancelled)
    if head is None:
        verdict = Verdict(False, "interrupted: files arrived", None, None, n, n)
        return Adapted(None, 1.0, verdict, time.process_time() - start)
    # the held-out cases come fold by fold, 4 a photo: the shipped head's in the same order
    order = np.concatenate([np.flatnonzero(fold == k) for k in range(settings.folds)])
    every = cascade_cases(shipped, labels, meta)
    shipped_held = [every[4 * i + t] for i in order for t in range(4)]
    # the gate reads a photo's 4 turns: the same for each of its 4 held-out cases
    support, inside = fit_support(labels.features, fold, settings)
    verdict = judge(held_out, shipped_held, meta.threshold("cascade"), settings, n,
                    np.repeat(inside[order], 4).tolist())
    verdict = replace(verdict, support_centroids=len(support.centroids))
    threshold = verdict.personal.threshold if verdict.personal is not None else 1.0
    return Adapted(head, threshold, verdict, time.process_time() - start, support)
