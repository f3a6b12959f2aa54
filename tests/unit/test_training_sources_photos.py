"""The photo-source list is read from a real bare git clone into manifest rows and PNGs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from training.sources_photos import SOURCES, Source, add, check, load_sources, main


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


def test_a_missing_clone_or_commit_is_one_error_line_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--check`` (and adding) with a mirror that lacks a repository, or a clone that lacks
    the pinned commit, say so on one line of stderr and exit 2."""
    mirror, commit = _mirror(tmp_path)
    listed = tmp_path / "sources.json"
    row = {"repo": "someone/pics", "commit": commit, "path": "pics/a.png",
           "licence": "CC0-1.0", "kind": "pets"}
    listed.write_text(json.dumps([row]))
    absent = tmp_path / "no-mirror"
    assert main(["--check", "--mirror", str(absent), "--sources", str(listed),
                 "--against"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: no snapshot of someone/pics at ")
    listed.write_text(json.dumps([{**row, "commit": "0" * 40}]))
    assert main(["--mirror", str(mirror), "--sources", str(listed),
                 "--out", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: git ")


def test_adding_no_photos_leaves_a_manifest_every_reader_can_parse(tmp_path: Path) -> None:
    """With every row this module's and no source left, the manifest is empty: a lone blank
    line made the next run (and the training pool's reader) fail on json.loads('')."""
    mirror, _commit = _mirror(tmp_path)
    out = tmp_path / "data"
    out.mkdir()
    mine = json.dumps({"file": "images/train/photos-pics/00000.png", "package": "photos-pics"})
    (out / "manifest.jsonl").write_text(mine + "\n")
    for _ in range(2):
        assert add([], mirror, out) == {}
        assert (out / "manifest.jsonl").read_text() == ""
