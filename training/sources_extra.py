"""More upright pictures from smaller Debian packages (added to fight photo data starvation).

gimp-help-en's example photos are the exception: they widen the validation photos. Screenshots
of Debian's games (games-thumbnails) train as their own kind, drawn as a small share of samples.

Each package here contributes a handful to a few hundred pictures with a clear "up": real photos
(palapeli puzzles, hugin and fotoxx manuals, gramps examples, phone photos in
forensics-samples-files, enlightenment's 4K wallpapers, matplotlib's and scikit-learn's sample
photos), photographic landscape panoramas (stellarium, transparent sky filled with a sky
gradient), and painted art with people and scenes (wesnoth portraits as cut-outs, story art).
Pictures that are textures or abstract are skipped by file name here or listed in
``models/no-up-images.txt``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from training.raw_image import RawImage, open_upright

RASTER = (".jpg", ".jpeg", ".png", ".webp")

# package -> split (all but gimp-help-en fit the weights; the held-out sources stay as they were)
EXTRA_PACKAGES: dict[str, str] = {
    "gimp-help-en": "val",
    "palapeli-data": "train",
    "hugin-data": "train",
    "fotoxx-common": "train",
    "gramps": "train",
    "forensics-samples-files": "train",
    "enlightenment-data": "train",
    "libelementary-data": "train",
    "kalzium-data": "train",
    "python-matplotlib-data": "train",
    "python3-sklearn": "train",
    "stellarium-data": "train",
    "wesnoth-1.16-data": "train",
    "flightgear-data-base": "train",
    "games-thumbnails": "train",
}

# Only where the package's DEP-5 copyright file lists no usable licence name; the others are
# read from the file (training.sources.package_licences).
LICENCES = {
    "games-thumbnails": "each game's own DFSG-free licence (Debian main; debian/copyright)",
    "gimp-help-en": "GFDL-1.2+ (gimp-help; its copyright file ships in gimp-help-common)",
    "wesnoth-1.16-data": "GPL-2+ (debian/copyright)",
    "hugin-data": "GPL-2+ (debian/copyright, Files: *, which covers the manual's images)",
    "python-matplotlib-data": "matplotlib licence (PSF-based; debian/copyright)",
}

# abstract / texture / UI files with no "up" (by name, checked by hand on contact sheets)
_SKIP = re.compile(r"(squiggle|flat-|pattern|texture|logo|splash-digikam|lut3d|space|earth_normal|"
                   r"panel_|wood_|rock_|fog|illum|ground|-256|prefs|preferences|Hugin2013|"
                   r"debian|body-background|insanely_huge|webstuff|icons|little_planet|aliasing|fisheye|"
                   r"stereographic|CA_artifical|guereinsb|hurricaneb|-lgt|lichen|spruce|"
                   r"paper-flower)", re.I)


# gimp-help-en's example photos, one file per photo: the original (or, for the stained glass,
# the upright result of the rotate tutorial; its "source" is stored sideways), never a filtered,
# zoomed, selected or screenshotted variant. Picked by eye on contact sheets of every picture of
# the manual; the model's answers on them were not looked at. Validation only.
GIMP_ORIGINALS = (
    "menus/taj_orig_2.png", "filters/examples/blur/mean_curvature-ex-1.jpg",
    "filters/examples/kvitveis-orig.png", "filters/examples/light-and-shadow/vignette-ex-orig.jpg",
    "filters/examples/map/little_planet-origin.jpg",
    "filters/examples/map/pan-project-result-1.jpg",
    "toolbox/cage-1.png", "tutorials/quickie-crop-example-source.jpg",
    "tutorials/quickie-flip-example-source.jpg", "tutorials/quickie-jpeg-100.jpg",
    "tutorials/quickie-remove-background-source.jpg", "tutorials/quickie-rotate-example-90-CCW.jpg",
    "tutorials/tone-mapping/apple-orchard-truck-from-camera.jpg", "using/duck_orig.png",
)


def _images(base: Path, sub: str, min_side: int, exts: tuple[str, ...] = RASTER
            ) -> Iterator[tuple[Path, Image.Image]]:
    root = base / sub
    if not root.is_dir():
        return
    for p in sorted(root.rglob("*")):
        # names under the walked folder only: the checkout's own path must not skip files
        if p.suffix.lower() not in exts or not p.is_file() \
                or _SKIP.search(str(p.relative_to(root))):
            continue
        if (im := open_upright(p)) is not None and min(im.size) >= min_side:
            yield p, im


def _sky(im: Image.Image, seed: int) -> Image.Image:
    """Fill a landscape's transparent sky with a vertical sky gradient (deep above, pale below)."""
    rng = np.random.default_rng(seed)
    top = np.array([40, 90, 170], np.float32) + rng.uniform(-30, 30, 3)
    low = np.array([190, 210, 235], np.float32) + rng.uniform(-25, 20, 3)
    t = np.linspace(0, 1, im.height, dtype=np.float32)[:, None, None]
    grad = np.broadcast_to(top * (1 - t) + low * t, (im.height, im.width, 3))
    sky = Image.fromarray(np.clip(grad, 0, 255).astype(np.uint8))
    rgba = im.convert("RGBA")
    sky.paste(rgba, mask=rgba.getchannel("A"))
    return sky


def _carve_jpegs(blob: bytes) -> Iterator[Image.Image]:
    """Raw JPEG entries inside an Eet (.edj) archive: open each SOI marker Pillow can decode."""
    for m in re.finditer(rb"\xff\xd8\xff[\xe0-\xef\xdb]", blob):
        try:
            im = Image.open(io.BytesIO(blob[m.start():]))
            im.load()
        except Exception:  # noqa: BLE001 - a false SOI or a thumbnail fragment
            continue
        yield im


def collect_extra(package: str, base: Path) -> Iterator[RawImage]:  # noqa: C901 - one per source
    rel = lambda p: str(p.relative_to(base))  # noqa: E731
    simple = {
        "palapeli-data": ("usr/share/palapeli/collection", 300, "photo"),
        "hugin-data": ("usr/share/hugin/xrc/data/help_en_EN", 250, "photo"),
        "fotoxx-common": ("usr/share/fotoxx/images", 300, "photo"),
        "gramps": ("usr/share/doc/gramps/example", 200, "photo"),
        "forensics-samples-files": ("usr/share/forensics-samples/original-files", 300, "photo"),
        "libelementary-data": ("usr/share/elementary/images", 300, "photo"),
        "kalzium-data": ("usr/share/kalzium/data/toolpics", 200, "photo"),
        "python-matplotlib-data": ("usr/share/matplotlib/mpl-data/sample_data", 300, "photo"),
        "python3-sklearn": ("usr/lib/python3/dist-packages/sklearn/datasets/images", 300,
                            "photo"),
    }
    if package in simple:
        sub, min_side, kind = simple[package]
        exts = (".jpg", ".jpeg") if package in ("hugin-data", "forensics-samples-files") \
            else RASTER
        for p, im in _images(base, sub, min_side, exts):
            yield RawImage(package, rel(p), im, kind)
    elif package == "games-thumbnails":
        for p, im in _images(base, "usr/share/games/thumbnails", 200, (".png",)):
            grey = np.asarray(im.convert("L").resize((64, 64)), np.float32)
            if grey.std() >= 15:  # near-black frames (empty space scenes) have no up
                yield RawImage(package, rel(p), im.convert("RGB"), "screenshot")
    elif package == "gimp-help-en":
        images = base / "usr/share/gimp/2.0/help/en/images"
        for name in GIMP_ORIGINALS:
            if (im := open_upright(images / name)) is not None:
                yield RawImage(package, rel(images / name), im.convert("RGB"), "photo")
    elif package == "enlightenment-data":
        for p in sorted((base / "usr/share/enlightenment/data/backgrounds").glob("*.edj")):
            if _SKIP.search(p.name):
                continue
            ims = [im for im in _carve_jpegs(p.read_bytes()) if min(im.size) >= 600]
            if ims:  # one wallpaper per archive: the full-size picture
                yield RawImage(package, rel(p), max(ims, key=lambda i: i.width), "photo")
    elif package == "stellarium-data":
        land = base / "usr/share/stellarium/landscapes"
        for n, (p, im) in enumerate(_images(land, ".", 256, (".png", ".jpg"))):
            if p.parent.name not in ("guereins", "hurricane", "ocean", "garching", "grossmugl",
                                     "trees", "moon", "mars", "geneva"):
                continue
            if im.mode in ("RGBA", "LA", "P"):
                im = _sky(im, n)
            yield RawImage(package, rel(p), im, "landscape")
    elif package == "flightgear-data-base":
        fg = base / "usr/share/games/flightgear"
        for p in [*sorted((fg / "Textures").glob("Splash*")),
                  *sorted((fg / "Aircraft/c172p/Previews").glob("*.jpg"))]:
            if (im := open_upright(p)) is not None and min(im.size) >= 300:
                yield RawImage(package, rel(p), im.convert("RGB"), "photo")
    elif package == "wesnoth-1.16-data":
        core = base / "usr/share/games/wesnoth/1.16/data/core/images"
        for p, im in _images(core, "portraits", 200, (".png", ".webp")):
            yield RawImage(package, rel(p), im.convert("RGBA"), "stamp")
        for p, im in _images(core, "story", 300, (".jpg", ".png", ".webp")):
            yield RawImage(package, rel(p), im.convert("RGB"), "painting")
    else:
        raise KeyError(package)
