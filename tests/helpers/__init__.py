"""What the tests share: waiting on a condition, synthetic photos, a deterministic classifier,
result collection and a fast config. Fixtures that use them live in ``tests/conftest.py``; the
other helper modules here make special inputs (``writer_images``, ``fake_sysfs``) or drive
real processes (``service_process``, ``ray_cluster``, ``web_client``).

The ``MarkerClassifier`` is the one fake allowed in daemon tests (the classifier is injected, as
the daemon's code allows): it reads a real image and finds the red bar that ``make_photo`` paints
along the upright top edge, so its answers follow the pixels, not the test's wishes. End-to-end
tests use the real model instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rotwatchd.config import Config, config_from_data
from rotwatchd.model.base import Prediction
from rotwatchd.service.processor import Result


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, step: float = 0.02) -> Any:
    """Re-check ``predicate`` until truthy (returned) or fail after ``timeout`` seconds.

    For things only the filesystem can tell (subprocess daemons); in-process tests wait on
    :class:`Results` instead.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        pause.wait(step)


# --- synthetic photos --------------------------------------------------------------------

RED = (220, 20, 20)


def upright_image(size: tuple[int, int] = (96, 64), seed: int = 0) -> Image.Image:
    """Textured grey-blue picture with a red bar along its top edge."""
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = rng.integers(60, 140, size=(h, w, 3), dtype=np.uint8)
    pixels[..., 2] = 160
    pixels[: max(2, h // 8)] = RED
    return Image.fromarray(pixels, "RGB")


def make_photo(path: Path, *, correction: int = 0, exif_orientation: int | None = None,
               size: tuple[int, int] = (96, 64), seed: int = 0, fmt: str = "JPEG",
               marker: bool = True) -> Path:
    """Write a photo that needs ``correction`` (clockwise degrees) to be upright.

    With ``exif_orientation`` the stored pixels are turned so that the tag (6: needs 90 CW,
    3: 180, 8: 270) makes them upright. ``marker=False`` paints no red bar (undecidable).
    """
    image = upright_image(size, seed)
    if not marker:
        image = Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8), "RGB")
    tag_turn = {None: 0, 1: 0, 3: 180, 6: 90, 8: 270}[exif_orientation]
    turned = image.rotate(correction + tag_turn, expand=True)  # CCW: needs that much CW
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    turned.save(path, fmt, quality=92, **kwargs) if fmt == "JPEG" else turned.save(path, fmt)
    return path


def red_edge(image: Image.Image) -> tuple[str, float]:
    """Which edge is red ('top', 'left', 'bottom', 'right') and how clearly (0..1)."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float64)
    redness = arr[..., 0] - (arr[..., 1] + arr[..., 2]) / 2
    h, w = redness.shape
    k_h, k_w = max(1, h // 10), max(1, w // 10)
    edges = {"top": redness[:k_h].mean(), "bottom": redness[-k_h:].mean(),
             "left": redness[:, :k_w].mean(), "right": redness[:, -k_w:].mean()}
    best = max(edges, key=lambda e: edges[e])
    return best, float(np.clip(edges[best] / 150.0, 0.0, 1.0))


class MarkerClassifier:
    """Deterministic OrientationClassifier for daemon-unit tests (see module docstring)."""

    CORRECTION = {"top": 0, "left": 90, "bottom": 180, "right": 270}

    def __init__(self) -> None:
        self.calls = 0
        self.closed = False
        self._lock = threading.Lock()

    def predict(self, image: Image.Image) -> Prediction:
        with self._lock:
            self.calls += 1
        edge, clarity = red_edge(image)
        confidence = 0.25 + 0.74 * clarity  # a plain picture stays below min_confidence
        rest = (1.0 - confidence) / 3
        probs = [rest] * 4
        probs[(0, 90, 180, 270).index(self.CORRECTION[edge])] = confidence
        return Prediction.from_probabilities((probs[0], probs[1], probs[2], probs[3]))

    def close(self) -> None:
        self.closed = True


# --- daemons -----------------------------------------------------------------------------


class Results:
    """Collects processor results from worker threads; tests wait on its condition.

    ``items`` holds files that were acted on; ``skipped`` the harmless no-ops (a duplicate
    event for a file already done or moved away, a file deferred because it looked unfinished),
    whose number depends on timing.
    """

    def __init__(self) -> None:
        self.items: list[Result] = []
        self.skipped: list[Result] = []
        self._cond = threading.Condition()

    def __call__(self, result: Result) -> None:
        with self._cond:
            noop = result.outcome in ("skipped", "deferred")
            (self.skipped if noop else self.items).append(result)
            self._cond.notify_all()

    def wait_skipped(self, n: int, timeout: float = 30.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.skipped) >= n, timeout):
                raise AssertionError(f"{n} skipped results not reached within {timeout}s")

    def wait_for(self, predicate: Callable[[list[Result]], bool], timeout: float = 30.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.items), timeout):
                got = [(str(r.path), r.outcome) for r in self.items]
                raise AssertionError(f"results not reached within {timeout}s; got {got}")

    def wait_count(self, n: int, timeout: float = 30.0) -> list[Result]:
        self.wait_for(lambda items: len(items) >= n, timeout)
        return list(self.items)

    def by_name(self) -> dict[str, Result]:
        with self._cond:
            return {r.path.name: r for r in self.items}


def fast_config(tmp_path: Path, **overrides: Any) -> Config:
    """A fast config in ``tmp_path``: inbox/ -> outbox/, quiet period 0.2 s, no web page, and
    a closed broken-looking file counts as broken at once (``watch.unfinished_wait: 0``, also
    when ``watch`` is overridden without it; tests of that wait set it themselves)."""
    (tmp_path / "inbox").mkdir(exist_ok=True)
    raw: dict[str, Any] = {
        "inboxes": [{"path": "inbox", "output": "outbox"}],
        "state_dir": "state",
        "watch": {"quiet_period": 0.2, "unfinished_wait": 0},
        "web": {"listen": None},  # tests of the page turn it on (on a free port)
    }
    for key, value in overrides.items():
        if key == "watch" and isinstance(value, dict):
            value = {"unfinished_wait": 0, **value}
        raw[key] = value
    return config_from_data(raw, base=tmp_path, source="test.yaml")


def stored_upright(path: Path) -> Image.Image:
    """A fixture photo as the daemon stores an EXIF-decided one before it learns from it: at
    most 384 px, re-saved as JPEG q90 (what on-device adaptation's label collector reads)."""
    import io

    with Image.open(path) as raw:
        im = raw.convert("RGB")
    im.thumbnail((384, 384))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return Image.open(io.BytesIO(buf.getvalue()))
