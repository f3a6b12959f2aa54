"""The photo-source list is read from a real bare git clone into manifest rows and PNGs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from PIL import Image

from training.sources_photos import SOURCES, Source, add, check, load_sources


def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c",
                           "init.defaultBranch=main", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


def _photo() -> Image.Image:
    """A 320×240 picture whose top half is bright and bottom half dark, with a gradient."""
    im = Image.new("RGB", (320, 240))
    im.putdata([(x * 255 // 319, 220 if y < 120 else 30, y) for y in range(240)
                for x in range(320)])
    return im


def _mirror(tmp_path: Path) -> tuple[Path, str]:
    work = tmp_path / "work"
    (work / "pics").mkdir(parents=True)
    _photo().save(work / "pics" / "a.png")
    _git("init", "-q", str(work))
    _git("add", ".", cwd=work)
    _git("commit", "-q", "-m", "photo", cwd=work)
    commit = _git("rev-parse", "HEAD", cwd=work)
    mirror = tmp_path / "mirror"
    _git("clone", "-q", "--bare", str(work), str(mirror / "someone+pics" / "repo"))
    return mirror, commit


def test_add_writes_pngs_and_replaces_its_own_rows(tmp_path: Path) -> None:
    mirror, commit = _mirror(tmp_path)
    source = Source("someone/pics", commit, "pics/a.png", "CC0-1.0", "pets")
    out = tmp_path / "data"
    out.mkdir()
    foreign = json.dumps({"file": "images/train/x/0.png", "package": "gnome-backgrounds"})
    stale = json.dumps({"file": "images/train/photos-old/0.png", "package": "photos-old"})
    (out / "manifest.jsonl").write_text(foreign + "\n" + stale + "\n")

    for _ in range(2):  # a second run replaces, never duplicates
        counts = add([source], mirror, out)
        assert counts == {"photos-pics": 1}

    rows = [json.loads(r) for r in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["package"] for r in rows] == ["gnome-backgrounds", "photos-pics"]
    row = rows[1]
    assert row["file"] == "images/train/photos-pics/00000.png"
    assert (row["split"], row["kind"], row["scene"]) == ("train", "photo", "pets")
    assert row["version"] == f"someone/pics@{commit}"
    assert (row["origin"], row["licence"]) == ("pics/a.png", "CC0-1.0")
    with Image.open(out / row["file"]) as im:
        assert im.format == "PNG"
        assert im.width > im.height  # stored as in the repository, not turned
        top, bottom = im.getpixel((im.width // 2, 5)), im.getpixel((im.width // 2, im.height - 5))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[1] > bottom[1]


def test_check_finds_a_near_copy_in_an_evaluation_folder(tmp_path: Path) -> None:
    mirror, commit = _mirror(tmp_path)
    source = Source("someone/pics", commit, "pics/a.png", "CC0-1.0", "pets")
    held_out = tmp_path / "val" / "pets"
    held_out.mkdir(parents=True)
    _photo().resize((160, 120)).save(held_out / "v1.jpg", quality=80)
    assert check([source], mirror, [tmp_path / "val"], None) != []
    assert check([source], mirror, [tmp_path / "elsewhere"], None) == []


def test_shipped_list_loads_and_keeps_to_its_kinds() -> None:
    sources = load_sources(SOURCES)
    assert len(sources) >= 200
    assert all(s.licence for s in sources)
