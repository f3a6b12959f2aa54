"""Where the training/evaluation images come from: Debian packages, fetched and unpacked.

Every image in the dataset traces back to one package listed in ``PACKAGES`` with its split:
``train`` (fitting), ``val`` (early stopping, temperature and threshold choice) or ``test``
(held-out sources, only ever evaluated). Splits are by *source package*, never by image, so the
evaluation measures generalisation to a source the network never saw.
"""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from training.raw_image import RawImage
from training.sources_extra import EXTRA_PACKAGES, LICENCES, collect_extra
from training.sources_found import FOUND_LICENCES, FOUND_PACKAGES, collect_found

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "cache"
DEBS = CACHE / "debs"
EXTRACT = CACHE / "x"
NO_UP_LIST = ROOT / "models" / "no-up-images.txt"


# package -> split. Sources with no split here are fetched only for fonts/documents.
PACKAGES: dict[str, str] = {
    "plasma-workspace-wallpapers": "train",
    "gnome-backgrounds": "train",
    "mate-backgrounds": "train",
    "sway-backgrounds": "train",
    "scratch": "train",
    "tuxpaint-stamps-default": "train",
    "tuxpaint-data": "train",
    "fonts-noto-color-emoji": "train",
    "ukui-wallpapers": "val",
    "lxqt-themes": "val",
    "gcompris-qt-data": "test",
    "kphotoalbum": "test",
    "tuxtype-data": "test",
    **EXTRA_PACKAGES,  # the smaller photo/art packages of training.sources_extra
    **FOUND_PACKAGES,  # documentation/example packages of training.sources_found
}
# gcompris-qt-data is split by activity (one rcc file per activity, different pictures and
# photographers): its object photos and cartoons train, its animal photos tune, and its
# monument/animal/music/painting activities are held out for the test.
GCOMPRIS_SPLIT: dict[str, str] = {
    "categorization": "train", "lang": "train", "babyshapes": "train", "chronos": "train",
    "louis-braille": "train", "leftright": "train",
    "erase": "val", "clickgame": "val",
    "explore_monuments": "test", "explore_world_animals": "test", "explore_farm_animals": "test",
    "explore_world_music": "test", "details": "test", "paintings": "test",
}


# Wallpapers of the validation packages that are renderings, logos or illustrations, not camera
# photos (judged by eye on a contact sheet, without the model's answers). They stay validation
# images but in their own folder (data/eval/val-art/), so the photo threshold is calibrated on
# photos, the population the photo floor is stated for, as the test photos are.
NOT_PHOTOS = {
    "lxqt-themes": {"plasma_arch.png", "waves-logo.png", "plasma-logo-bright.png",
                    "plasma-logo-dark.png", "triangles-logo.png", "origami-bright-logo.png",
                    "waves-purple-logo.jpg", "origami-light.png"},
    "ukui-wallpapers": {"focal-ubuntukylin.png", "goldfish.png", "firstgeneration.jpg",
                        "the-mouse.jpg", "calla.png"},
}


def split_for(package: str, kind: str) -> str | None:
    """train / val / test for an image, or None when it is not used (e.g. planets: no up)."""
    if package == "gcompris-qt-data":
        return GCOMPRIS_SPLIT.get(kind)
    return PACKAGES[package]


def wallpaper_kind(package: str, origin: str) -> str:
    """``art`` for a validation wallpaper listed in NOT_PHOTOS, else ``wallpaper``."""
    return "art" if Path(origin).name in NOT_PHOTOS.get(package, set()) else "wallpaper"


FONT_PACKAGES = ("fonts-dejavu-core", "fonts-liberation2", "fonts-noto-core", "fonts-noto-cjk")


def fetch(package: str) -> Path:
    """Download (``apt-get download``) and unpack (``dpkg-deb -x``) a package; cached."""
    target = EXTRACT / package
    if target.is_dir():
        return target
    DEBS.mkdir(parents=True, exist_ok=True)
    EXTRACT.mkdir(parents=True, exist_ok=True)
    if not list(DEBS.glob(f"{package}_*.deb")):
        subprocess.run(["apt-get", "download", package], cwd=DEBS, check=True)
    deb = sorted(DEBS.glob(f"{package}_*.deb"))[-1]
    tmp = target.with_suffix(".part")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
    tmp.rename(target)
    return target


def package_version(package: str) -> str:
    deb = sorted(DEBS.glob(f"{package}_*.deb"))[-1]
    return deb.name.split("_")[1].replace("%3a", ":")


# Licences of the images we use, read by hand from each package's debian/copyright where the
# file is not machine-readable or lists many unrelated parts.
LICENCE_OVERRIDES = {
    "scratch": "CC-BY-SA-3.0 (Media/*)",
    "kphotoalbum": "GPL-2+ (demo images ship under the package's GPL)",
    "tuxtype-data": "GPL-2",
    "gcompris-qt-data": "GPL-3+ (artwork: see debian/copyright; some CC-BY-SA / public domain)",
    "tuxpaint-stamps-default": "GPL-2",
    "tuxpaint-data": "GPL-2+",
    "fonts-noto-color-emoji": "OFL-1.1 (font), Apache-2.0 (tools)",
    **LICENCES,
    **FOUND_LICENCES,
}


def package_licences(package: str) -> str:
    """The distinct ``License:`` short names of the package's DEP-5 copyright file."""
    if package in LICENCE_OVERRIDES:
        return LICENCE_OVERRIDES[package]
    path = EXTRACT / package / "usr/share/doc" / package / "copyright"
    if not path.is_file():
        return "see /usr/share/doc/" + package + "/copyright"
    names = re.findall(r"^License:\s*(\S[^\n]*)$", path.read_text(errors="replace"), re.M)
    uniq = list(dict.fromkeys(n.strip() for n in names))
    return " / ".join(uniq) if uniq else "see copyright file"


def no_up_names() -> set[str]:
    """Origins listed as abstract art with no 'up' (first column of the committed list)."""
    if not NO_UP_LIST.is_file():
        return set()
    out = set()
    for line in NO_UP_LIST.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.add(line.split()[0])
    return out


def _open(path: Path) -> Image.Image | None:
    try:
        im = Image.open(path)
        im.load()
    except Exception:  # noqa: BLE001 - a package file that is not a decodable raster is skipped
        return None
    return im


def _files(base: Path, pattern: str, exts: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in base.glob(pattern) if p.suffix.lower() in exts and p.is_file())


RASTER = (".jpg", ".jpeg", ".png", ".webp", ".gif")


def _largest_per_dir(paths: list[Path]) -> list[Path]:
    """Wallpaper packages ship one picture at several resolutions: keep the biggest file."""
    best: dict[Path, Path] = {}
    for p in paths:
        key = p.parent
        if key not in best or p.stat().st_size > best[key].stat().st_size:
            best[key] = p
    return list(best.values())


def collect(package: str) -> Iterator[RawImage]:
    """Yield the upright pictures of one package (abstract no-up images already dropped)."""
    base = fetch(package)
    skip = no_up_names()
    for raw in _collect(package, base):
        if f"{package}:{raw.origin}" not in skip:
            yield raw


def _collect(package: str, base: Path) -> Iterator[RawImage]:  # noqa: C901 - one case per source
    rel = lambda p: str(p.relative_to(base))  # noqa: E731
    if package == "plasma-workspace-wallpapers":
        for d in sorted((base / "usr/share/wallpapers").iterdir()):
            for sub in ("images", "images_dark"):
                cands = _files(d / "contents" / sub, "*", RASTER)
                if cands:
                    p = max(cands, key=lambda q: q.stat().st_size)
                    if (im := _open(p)) is not None:
                        yield RawImage(package, rel(p), im, "wallpaper")
    elif package in ("gnome-backgrounds", "mate-backgrounds", "ukui-wallpapers", "lxqt-themes"):
        seen: set[str] = set()
        paths = _files(base, "usr/share/**/*", RASTER)
        for p in sorted(paths, key=lambda q: -q.stat().st_size):
            stem = re.sub(r"_\d+x\d+$", "", p.stem)
            if (p.parent, stem) in seen or p.stat().st_size < 60_000:
                continue
            seen.add((p.parent, stem))  # type: ignore[arg-type]
            if (im := _open(p)) is not None and min(im.size) >= 300:
                yield RawImage(package, rel(p), im, wallpaper_kind(package, rel(p)))
    elif package == "sway-backgrounds":
        p = base / "usr/share/backgrounds/sway/Sway_Wallpaper_Blue_2048x1536.png"
        if (im := _open(p)) is not None:
            yield RawImage(package, rel(p), im, "wallpaper")
    elif package == "scratch":
        media = base / "usr/share/scratch/Media"
        for p in _files(media / "Backgrounds", "*/*", (".jpg", ".png")):
            if (im := _open(p)) is not None:
                yield RawImage(package, rel(p), im, "photo")
        for cat in ("Animals", "People", "Things", "Transportation", "Fantasy"):
            for p in _files(media / "Costumes" / cat, "*", (".png", ".gif")):
                if (im := _open(p)) is not None and min(im.size) >= 48:
                    yield RawImage(package, rel(p), im, "stamp")
    elif package == "tuxpaint-stamps-default":
        for p in _files(base / "usr/share/tuxpaint/stamps", "**/*", (".png",)):
            if (im := _open(p)) is not None and min(im.size) >= 48:
                yield RawImage(package, rel(p), im, "stamp")
    elif package == "tuxpaint-data":
        for sub in ("starters", "templates"):
            for p in _files(base / "usr/share/tuxpaint" / sub, "*", (".png", ".jpg", ".jpeg")):
                if "-back" in p.stem or "-mask" in p.stem:
                    continue
                if (im := _open(p)) is not None and min(im.size) >= 200:
                    yield RawImage(package, rel(p), im, "drawing")
    elif package == "fonts-noto-color-emoji":
        yield from _emoji(base)
    elif package == "gcompris-qt-data":
        yield from _gcompris(base)
    elif package == "kphotoalbum":
        yield from _kphotoalbum(base)
    elif package == "tuxtype-data":
        img = base / "usr/share/tuxtype/images"
        for p in _files(img, "**/*", (".jpg", ".jpeg", ".png")):
            if (im := _open(p)) is not None and min(im.size) >= 200:
                yield RawImage(package, rel(p), im, "photo")
    elif package in FOUND_PACKAGES:
        yield from collect_found(package, base)
    else:
        yield from collect_extra(package, base)


def _emoji(base: Path) -> Iterator[RawImage]:
    from PIL import ImageDraw, ImageFont

    font_path = next(base.glob("usr/share/fonts/**/NotoColorEmoji.ttf"))
    font = ImageFont.truetype(str(font_path), 109)
    # People, animals, food, transport, objects: pictograms with a clear up.
    ranges = [(0x1F600, 0x1F64F), (0x1F400, 0x1F43F), (0x1F344, 0x1F37F), (0x1F680, 0x1F6A4)]
    for lo, hi in ranges:
        for cp in range(lo, hi + 1, 2):
            im = Image.new("RGBA", (136, 128), (0, 0, 0, 0))
            ImageDraw.Draw(im).text((0, 0), chr(cp), font=font, embedded_color=True)
            if im.getbbox() is not None and im.getchannel("A").getextrema()[1] > 0:
                glyph = im.crop(im.getbbox())
                yield RawImage("fonts-noto-color-emoji", f"U+{cp:X}", glyph, "stamp")


def _gcompris(base: Path) -> Iterator[RawImage]:
    import io

    for rcc in sorted((base / "usr/share/gcompris-qt/rcc").glob("*.rcc")):
        data = rcc.read_bytes()
        for m in re.finditer(rb"RIFF(....)WEBP", data, re.S):
            size = int.from_bytes(m.group(1), "little") + 8
            chunk = data[m.start() : m.start() + size]
            try:
                im = Image.open(io.BytesIO(chunk))
                im.load()
            except Exception:  # noqa: BLE001 - damaged/odd chunk: not an image we can use
                continue
            if min(im.size) >= 128:
                yield RawImage("gcompris-qt-data", f"{rcc.name}@{m.start()}", im, rcc.stem)


def _kphotoalbum(base: Path) -> Iterator[RawImage]:
    demo = base / "usr/share/kphotoalbum/demo"
    angles: dict[str, int] = {}
    for el in ET.parse(demo / "index.xml").iter("image"):
        angles[el.get("file", "")] = int(el.get("angle", "0"))
    for p in _files(demo, "*", (".jpg",)):
        if p.name == "qt-logo.jpg" or (im := _open(p)) is None:
            continue
        angle = angles.get(p.name, 0)
        if angle:  # stored rotated on purpose; index.xml says the clockwise turn to show it
            im = im.rotate(-angle, expand=True)
        yield RawImage("kphotoalbum", str(p.relative_to(base)), im, "photo")
