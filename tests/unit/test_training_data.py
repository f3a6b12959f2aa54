"""Dataset plumbing of the training package that needs no torch: eval folders, validation
wallpaper kinds, and the screenshot share of photo samples."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

from training.augment import SCREEN_SHARE, load_pool, upright_sample
from training.build_dataset import eval_dirs
from training.sources import NOT_PHOTOS, split_for, wallpaper_kind


def _row(data: Path, split: str, package: str, kind: str, n: int,
         colour: tuple[int, int, int] | Image.Image = (90, 90, 90)) -> dict[str, object]:
    """Write one dataset image (a flat colour, or the given picture) and its manifest row."""
    rel = Path("images") / split / package / f"{n:05d}.png"
    (data / rel).parent.mkdir(parents=True, exist_ok=True)
    im = colour if isinstance(colour, Image.Image) else Image.new("RGB", (64, 48), colour)
    im.save(data / rel)
    return {"file": str(rel), "package": package, "split": split, "kind": kind,
            "alpha": False, "origin": f"o{n}"}


def test_validation_art_gets_its_own_folder_apart_from_the_photos(tmp_path: Path) -> None:
    rows = [_row(tmp_path, "val", "lxqt-themes", "wallpaper", 0),
            _row(tmp_path, "val", "lxqt-themes", "art", 1),
            _row(tmp_path, "val", "gimp-help-en", "photo", 2),
            _row(tmp_path, "val", "synthetic-documents", "document", 3),
            _row(tmp_path, "train", "scratch", "photo", 4)]
    eval_dirs(rows, tmp_path)
    links = (tmp_path / "eval").rglob("*.png")
    found = sorted(str(p.relative_to(tmp_path / "eval")) for p in links)
    assert found == ["val-art/lxqt-themes/00001.png", "val-docs/documents/00003.png",
                     "val-photos/gimp-help-en/00002.png", "val-photos/lxqt-themes/00000.png"]


def test_listed_logo_wallpapers_are_art_and_the_rest_stay_wallpapers() -> None:
    logo = next(iter(NOT_PHOTOS["lxqt-themes"]))
    assert wallpaper_kind("lxqt-themes", f"usr/share/lxqt/wallpapers/{logo}") == "art"
    assert wallpaper_kind("lxqt-themes", "usr/share/lxqt/wallpapers/fog.jpg") == "wallpaper"
    assert wallpaper_kind("mate-backgrounds", f"usr/share/backgrounds/{logo}") == "wallpaper"
    assert split_for("lxqt-themes", "art") == "val"
    assert split_for("gimp-help-en", "photo") == "val"
    assert split_for("games-thumbnails", "screenshot") == "train"


def test_screenshots_are_a_small_share_of_photo_samples(tmp_path: Path) -> None:
    rows = [_row(tmp_path, "train", "photos", "photo", n, (220, 30, 30)) for n in range(3)]
    rows += [_row(tmp_path, "train", "games", "screenshot", 10 + n, (30, 30, 220))
             for n in range(30)]  # ten times as many screenshots as photos
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool = load_pool(tmp_path, "train")
    assert (len(pool.photos), len(pool.screens)) == (3, 30)
    rng = random.Random(5)
    blue = 0
    draws = 1500
    for _ in range(draws):
        im, kind = upright_sample(rng, pool, (1.0, 0.0, 0.0))
        assert kind == "photo"
        r, _g, b = np.asarray(im.convert("RGB"), np.float32).mean(axis=(0, 1))
        blue += b > r
    assert abs(blue / draws - SCREEN_SHARE) < 0.03, blue / draws


def _red_to_blue() -> Image.Image:
    """Red fades into blue from left to right; red + blue is constant, so the colour jitter
    (contrast, saturation, white balance) keeps "more red on the left"."""
    t = np.linspace(0.0, 1.0, 160, dtype=np.float32)[None, :]
    arr = np.zeros((120, 160, 3), np.uint8)
    arr[..., 0] = np.broadcast_to(255 * (1 - t), (120, 160))
    arr[..., 2] = np.broadcast_to(255 * t, (120, 160))
    return Image.fromarray(arr)


def _red_on_the_left(im: Image.Image) -> bool:
    red = np.asarray(im.convert("RGB"), np.float32)[..., 0]
    half = red.shape[1] // 2
    return bool(red[:, :half].mean() > red[:, half:].mean())


def test_mirroring_flips_photos_but_never_documents(tmp_path: Path) -> None:
    rows = [_row(tmp_path, "train", "photos", "photo", n, _red_to_blue()) for n in range(2)]
    rows += [_row(tmp_path, "train", "pages", "document", 10 + n, _red_to_blue())
             for n in range(2)]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool = load_pool(tmp_path, "train")
    rng = random.Random(3)
    photos = [upright_sample(rng, pool, (1.0, 0.0, 0.0), mirror)[0]
              for mirror in (0.0, 1.0) for _ in range(40)]
    assert [_red_on_the_left(im) for im in photos] == [True] * 40 + [False] * 40
    docs = [upright_sample(rng, pool, (0.0, 0.0, 1.0), 1.0)[0] for _ in range(40)]
    assert all(_red_on_the_left(im) for im in docs)


def test_found_packages_split_by_package_and_cimg_illustrations_are_art(tmp_path: Path) -> None:
    from training.sources_found import CIMG_ART, FOUND_PACKAGES, VAL_FOUND, collect_found

    assert {p for p, s in FOUND_PACKAGES.items() if s == "val"} == set(VAL_FOUND)
    assert set(FOUND_PACKAGES.values()) == {"train", "val"}  # never a test source
    assert split_for("cimg-doc", "art") == "val" and split_for("gimp-data", "photo") == "train"
    img = tmp_path / "cimg" / "usr/share/doc/cimg-dev/html/img"
    img.mkdir(parents=True)
    art = min(CIMG_ART)
    for n in (1, art, 10):
        Image.new("RGB", (80, 60), (n, 40, 40)).save(img / f"postcard{n}.jpg")
    Image.new("RGB", (80, 60)).save(img / "ss_tetris.jpg")  # a screenshot, not a postcard
    found = collect_found("cimg-doc", tmp_path / "cimg")
    got = [(r.origin.rsplit("/", 1)[1], r.kind) for r in found]
    assert got == [("postcard1.jpg", "photo"), ("postcard10.jpg", "photo"),
                   (f"postcard{art}.jpg", "art")]


def test_gnome_avatars_skip_the_legacy_symlinks(tmp_path: Path) -> None:
    from training.sources_found import collect_found

    faces = tmp_path / "usr/share/pixmaps/faces"
    (faces / "legacy").mkdir(parents=True)
    Image.new("RGB", (512, 512), (10, 200, 10)).save(faces / "tree.jpg")
    Image.new("RGB", (96, 96)).save(faces / "legacy" / "astronaut.jpg")
    (faces / "astronaut.jpg").symlink_to("legacy/astronaut.jpg")
    got = [r.origin for r in collect_found("gnome-control-center-data", tmp_path)]
    assert got == ["usr/share/pixmaps/faces/tree.jpg"]
