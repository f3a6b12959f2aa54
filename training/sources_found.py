"""Pictures found by searching Debian's Contents index for packages that ship JPEG files.

Release 4 widened the search from wallpaper and data packages to documentation and example
packages (``zcat Contents-all.gz`` → packages by number of ``.jpg`` files → contact sheets of
the candidates). Each file here was picked by eye on a contact sheet, before any model had seen
it: real photographs with a clear "up" (and, for training, a few paintings). Duplicates,
annotated/visualised copies, screenshots, diagrams and textures were left out.

Splits, fixed before measuring anything on them: the four whole packages with the most photos
(``cimg-doc``'s 80 photographed postcards, ``gnome-control-center-data``'s 15 avatar photos,
``psychtoolbox-3-common``'s demo photos and ``labelme-examples``' photos) go to **validation**,
where the review threshold is chosen; the many packages holding one to eight pictures train.
The held-out test sources are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from training.raw_image import RawImage, open_upright

VAL_FOUND = ("cimg-doc", "gnome-control-center-data", "psychtoolbox-3-common", "labelme-examples")

_DOC = "usr/share/doc/"
# package -> files (relative to the unpacked package); kind "photo" unless listed in _PAINTINGS
PICKS: dict[str, tuple[str, ...]] = {
    "gnome-control-center-data": (),  # every avatar photo: see collect_found
    "cimg-doc": (),  # every postcard: see collect_found
    "psychtoolbox-3-common": tuple(
        "usr/share/psychtoolbox-3/" + p for p in (
            "PsychDemos/AlphaImageDemo/konijntjes1024x768.jpg",
            *(f"PsychDemos/PsychExampleExperiments/OldNewRecognition/stims/stim{i}.jpg"
              for i in range(2, 7)),
            "PsychHardware/EyelinkToolbox/EyelinkDemos/SR-ResearchDemo/town.jpg")),
    "labelme-examples": tuple(
        _DOC + "labelme-examples/examples/" + p for p in (
            "bbox_detection/data_annotated/2011_000003.jpg",
            "bbox_detection/data_annotated/2011_000006.jpg",
            "bbox_detection/data_annotated/2011_000025.jpg",
            "classification/data_annotated/0001.jpg", "classification/data_annotated/0002.jpg",
            "tutorial/apc2016_obj3.jpg", "video_annotation/data_annotated/00000100.jpg")),
    "afterstep-data": ("usr/share/afterstep/desktop/tiles/rose512.jpg",),
    "gimp-data": ("usr/share/gimp/2.0/images/gimp-splash.png",
                  "usr/share/gimp/2.0/scripts/images/beavis.jpg"),
    "libjs-jquery-backstretch": tuple(
        _DOC + "libjs-jquery-backstretch/examples/" + n for n in (
            "coffee.jpg", "dome.jpg", "pot-holder.jpg", "sample1_1280.jpg", "sample2_1280.jpg")),
    "libjs-jquery-colorbox": tuple(
        _DOC + "libjs-jquery-colorbox/examples/content/" + n for n in (
            "daisy.jpg", "marylou.jpg", "ohoopee1.jpg", "ohoopee2.jpg", "ohoopee3.jpg")),
    "libjs-jquery-slides": tuple(
        _DOC + "libjs-jquery-slides/examples/" + n for n in (
            "Linking/img/slide-1.jpg", "Linking/img/slide-4.jpg", "Linking/img/slide-5.jpg",
            "Linking/img/slide-6.jpg", "Linking/img/slide-7.jpg", "Linking/img/slide.jpg",
            "Product/img/1144953-3-2x.jpg", "Product/img/1144953-p-2x.jpg")),
    "libsixel-examples": (_DOC + "libsixel-examples/examples/images/egret.jpg",
                          _DOC + "libsixel-examples/examples/images/snake-palette.png"),
    "libjxl-testdata": tuple(
        "usr/share/libjxl-testdata/" + n for n in (
            "external/wesaturate/500px/cvo9xd_keong_macan_grayscale.png",
            "external/wesaturate/500px/tmshre_riaphotographs_alpha.png",
            "external/wesaturate/500px/u76c0g_bliznaca_srgb8.png",
            "jxl/flower/flower.png", "jxl/flower/flower_cropped.jpg", "jxl/hdr_room.png")),
    "pyqt5-examples": (_DOC + "pyqt5-examples/examples/draganddrop/puzzle/example.jpg",),
    "python-kivy-examples": tuple(
        "usr/share/kivy-examples/" + n for n in (
            "canvas/kiwi.jpg", "demo/pictures/images/Wall.jpg",
            "demo/pictures/images/faust_github.jpg", "widgets/cityCC0.png")),
    "python-pygame-doc": (_DOC + "python-pygame-doc/examples/data/fist.png",
                          _DOC + "python-pygame-doc/html/_images/camera_rgb.jpg"),
    "scribus-template": tuple(
        "usr/share/scribus/templates/" + n for n in (
            "br2/nature.jpg", "br2/sunset.jpg", "menu1/teriyaki.png", "menu2/pizza.jpg",
            "scribus_project_de/craigbradney.jpg")),
    "python3-pattern": (_DOC + "python3-pattern/examples/08-server/01-basic/static/cat.jpg",),
    "golang-github-disintegration-imaging-dev": tuple(
        "usr/share/gocode/src/github.com/disintegration/imaging/testdata/" + n
        for n in ("branches.jpg", "flowers.png")),
    "wordpress-theme-twentytwentyone": tuple(
        "usr/share/wordpress/wp-content/themes/twentytwentyone/assets/images/" + n for n in (
            "Daffodils.jpg", "Reading.jpg", "in-the-bois-de-boulogne.jpg",
            "playing-in-the-sand.jpg", "roses-tremieres-hollyhocks-1884.jpg",
            "self-portrait-1885.jpg", "the-garden-at-bougival-1884.jpg",
            "villa-with-orange-trees-nice.jpg", "young-woman-in-mauve.jpg")),
}
_PAINTINGS = {"wordpress-theme-twentytwentyone"}  # Berthe Morisot's paintings (public domain)

FOUND_PACKAGES: dict[str, str] = {p: "val" if p in VAL_FOUND else "train" for p in PICKS}

FOUND_LICENCES = {
    "cimg-doc": "CeCILL (debian/copyright)",
    "scribus-template": "public domain (Riku Leino's templates) / scribus_project_de per "
                        "debian/copyright",
}

# cimg-doc's postcards that are illustrations, a print or a logo rather than photographs: kept
# for validation in data/eval/val-art (reported, never used to pick the threshold). Postcards
# with no up at all (51: blank, 70: abstract) are in models/no-up-images.txt.
CIMG_ART = {41, 52, 55, 62, 66, 71, 73, 80}


def collect_found(package: str, base: Path) -> Iterator[RawImage]:
    rel = lambda p: str(p.relative_to(base))  # noqa: E731
    if package == "cimg-doc":
        img = base / _DOC / "cimg-dev/html/img"
        for number, p in sorted((int(p.stem[8:]), p) for p in img.glob("postcard*.jpg")):
            if (im := open_upright(p)) is not None:
                yield RawImage(package, rel(p), im, "art" if number in CIMG_ART else "photo")
        return
    if package == "gnome-control-center-data":
        faces = base / "usr/share/pixmaps/faces"
        # the 512 px photos; the 96 px legacy avatars (symlinks into legacy/) are not used
        paths = sorted(p for p in faces.glob("*.jpg") if not p.is_symlink())
    else:
        paths = [base / f for f in PICKS[package]]
    kind = "painting" if package in _PAINTINGS else "photo"
    for p in paths:
        if (im := open_upright(p)) is not None:
            yield RawImage(package, rel(p), im, kind)
