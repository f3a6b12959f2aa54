"""limits.max_pixels is the one size limit, both ways; big images for the model in bounded memory.

Pillow refuses images above twice its own MAX_IMAGE_PIXELS (~179 MP) before rotwatchd looks at
them, so a user who raised max_pixels still had 180 MP files quarantined. The memory test runs
the loading path in a child process and reads its resident set size from the kernel: peak
(VmHWM) and what is still resident afterwards (VmRSS).
"""

from __future__ import annotations

import inspect as pyinspect
import json
import logging
import os
import shutil
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import fast_config
from helpers.paths import FIXTURES_DIR, REPO_ROOT
from PIL import Image

from rotwatchd.config import LimitsConfig
from rotwatchd.config.schema import describe
from rotwatchd.fix.oneshot import assess
from rotwatchd.formats import image as imagefile
from rotwatchd.model.base import OrientationClassifier
from rotwatchd.output.writer import write_corrected

FIXTURES = FIXTURES_DIR
REPO = REPO_ROOT
BEYOND_PILLOW = (13440, 13440)  # 180.6 MP: above Pillow's 178.9 MP error limit


class NoModel:
    """A model source for files whose orientation is in their EXIF: asking it fails the test."""

    def lease(self) -> AbstractContextManager[OrientationClassifier]:
        raise AssertionError("the model was asked about an EXIF-tagged file")


def test_one_default_for_max_pixels() -> None:
    default = LimitsConfig().max_pixels
    assert default == imagefile.DEFAULT_MAX_PIXELS
    for function in (imagefile.inspect, imagefile.load_upright, imagefile.open_image,
                     imagefile.read_jpeg, write_corrected):
        assert pyinspect.signature(function).parameters["max_pixels"].default == default
    assert f"max_pixels (int, default {default!r})" in "\n".join(describe())


@pytest.fixture(scope="module")
def beyond_pillow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 180.6 MP JPEG (flat grey, 2 MB) with EXIF Orientation 6."""
    path = tmp_path_factory.mktemp("big") / "big.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    image = Image.new("L", BEYOND_PILLOW, 128)
    image.save(path, quality=50, exif=exif.tobytes())
    image.close()
    return path


def test_max_pixels_above_pillows_limit_is_honoured(beyond_pillow: Path) -> None:
    for limits in (LimitsConfig(), LimitsConfig(max_pixels=400_000_000)):
        decision = assess(beyond_pillow, NoModel(), 0.0, limits).decision
        assert (decision.action, decision.source, decision.correction) == ("rotate", "exif", 90)


def test_max_pixels_below_the_image_refuses_it_naming_the_key(beyond_pillow: Path) -> None:
    pixels = BEYOND_PILLOW[0] * BEYOND_PILLOW[1]
    decision = assess(beyond_pillow, NoModel(), 0.0, LimitsConfig(max_pixels=pixels - 1)).decision
    assert decision.action == "quarantine"
    assert decision.reason == (f"too-large: 13440x13440 pixels exceeds the limit of "
                               f"{pixels - 1} pixels (limits.max_pixels)")


def test_lowered_limit_quarantines_with_one_clear_log_line(
        tmp_path: Path, daemon_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    config = fast_config(tmp_path, limits={"max_pixels": 128 * 96 - 1})
    daemon, results = daemon_factory(config)
    staging = tmp_path / "staging.tif"
    shutil.copyfile(FIXTURES / "c06_tiff_orient6.tif", staging)
    with caplog.at_level(logging.WARNING, logger="rotwatchd.service.processor"):
        os.rename(staging, config.inboxes[0].path / "scan.tif")
        (result,) = results.wait_count(1)
    assert result.outcome == "quarantined"
    lines = [r.getMessage() for r in caplog.records if "scan.tif" in r.getMessage()]
    assert len(lines) == 1
    assert "too-large" in lines[0] and "12287 pixels (limits.max_pixels)" in lines[0]


# --- memory ------------------------------------------------------------------------------

_CHILD = """
import json, sys, threading
from pathlib import Path
from rotwatchd.formats.image import inspect, load_upright

def status_mib(key):  # VmHWM is this program's own peak (ru_maxrss can be the parent's)
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(key + ":"))
    return int(line.split()[1]) / 1024

def like_a_worker():
    inspect(path)
    sizes.append(load_upright(path, 384).size)

path, sizes = Path(sys.argv[1]), []
before = status_mib("VmRSS")
worker = threading.Thread(target=like_a_worker)  # the daemon decodes in worker threads
worker.start()
worker.join()
assert max(sizes[0]) == 384, sizes
print(json.dumps({"before": before, "peak": status_mib("VmHWM"), "after": status_mib("VmRSS")}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("mode", ["RGBA", "P"])
def test_big_png_for_the_model_in_bounded_memory_and_released(tmp_path: Path,
                                                              mode: str) -> None:
    """What a daemon worker does with a PNG (inspect, then load for the model): at most about
    one decoded frame resident at the peak, and close to nothing kept once it is done. Before,
    a 24 MP RGBA PNG peaked at five full-size copies and more than two stayed resident."""
    width, height = 6000, 4000
    image = Image.new("RGBA", (width, height), (90, 140, 200, 255))
    image.paste((230, 30, 30, 255), (0, 0, width // 3, height // 4))
    if mode == "P":
        image = image.convert("RGB").quantize(colors=4)
        image.info["transparency"] = 0
    path = tmp_path / "big.png"
    image.save(path, compress_level=1)
    decoded_mib = width * height * 4 / 2**20  # Pillow keeps RGBA, RGB and P-as-RGBA at 4 B/px
    image.close()

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True,
                           text=True, check=True, env=env, timeout=100)
    rss = json.loads(child.stdout)
    assert rss["peak"] - rss["before"] < 1.3 * decoded_mib, rss
    assert rss["after"] - rss["before"] < 0.2 * decoded_mib, rss


def _reference_for_model(image: Image.Image, side: int) -> np.ndarray:
    """The model's input made the plain way: a full-size RGB copy (alpha on white, 16-bit
    scaled), then a thumbnail."""
    if image.mode == "I;16":
        scaled = np.asarray(image, dtype=np.float64) * (255.0 / 65535.0)
        image = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    full = Image.alpha_composite(white, rgba).convert("RGB")
    full.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(full).astype(int)


@pytest.mark.parametrize("mode", ["1", "L", "P", "P+transparency", "LA", "RGB", "RGBA",
                                  "I;16", "CMYK"])
def test_reduced_loading_gives_the_model_the_same_picture(tmp_path: Path, mode: str) -> None:
    """Averaging in the image's own mode, a strip at a time, before converting: the picture
    the model sees is the one a full-size conversion gives."""
    width, height = 1600, 1000  # reduced by 2, in two strips
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)],
                   axis=-1).astype(np.uint8)
    rgb[: height // 4, : width // 3] = (230, 30, 30)
    alpha = np.where(x > width // 2, 255, 90).astype(np.uint8)
    image = Image.fromarray(rgb)
    if mode in ("LA", "RGBA"):
        image = Image.fromarray(np.dstack([rgb, alpha])).convert(mode)
    elif mode == "I;16":
        image = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    elif mode.startswith("P"):
        image = image.quantize(colors=64)
        if mode == "P+transparency":
            image.info["transparency"] = 3
    else:
        image = image.convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    path = tmp_path / f"picture.{fmt.lower()}"
    image.save(path, fmt, **({"transparency": 3} if mode == "P+transparency" else {}))

    with Image.open(path) as saved:
        expected = _reference_for_model(saved, 384)
    got = np.asarray(imagefile.load_upright(path, 384)).astype(int)
    assert got.shape == expected.shape
    assert np.abs(got - expected).mean() < 2.0, np.abs(got - expected).mean()
