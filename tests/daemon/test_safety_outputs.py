"""A name used twice never costs a picture: outputs, review copies and ``fix`` keep both; odd
names (not UTF-8, 255 bytes) are processed like any other."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import MarkerClassifier, fast_config, make_photo, red_edge
from PIL import Image

from rotwatchd.config import Config, LimitsConfig, ModelConfig, OutputConfig, ensure_dirs
from rotwatchd.fix.oneshot import fix
from rotwatchd.formats.image import load_upright
from rotwatchd.formats.sniff import HEIF_AVAILABLE
from rotwatchd.output.atomic import NAME_MAX, numbered_name
from rotwatchd.service.classifier_pool import ClassifierPool
from rotwatchd.service.journal import Journal
from rotwatchd.service.processor import Processor, Result

# (file name, make_photo arguments, output settings, what the output must be)
KINDS: dict[str, tuple[str, dict[str, Any], dict[str, Any], str]] = {
    "lossless-jpeg": ("IMG_0001.jpg", {"correction": 90}, {}, "done"),
    "upright-copy": ("IMG_0001.jpg", {"correction": 0}, {}, "done"),
    "hardlink": ("IMG_0001.jpg", {"correction": 0}, {"hardlink_upright": True}, "done"),
    "tag-mode": ("IMG_0001.jpg", {"correction": 180}, {"mode": "tag"}, "done"),
    "png": ("IMG_0001.png", {"correction": 270, "fmt": "PNG"}, {}, "done"),
    "heic": ("IMG_0001.heic", {"correction": 90, "fmt": "HEIF"}, {}, "done"),
    "review-copy": ("IMG_0001.jpg", {"marker": False}, {}, "review"),  # see _photo
}


def _setup(tmp_path: Path, output: dict[str, Any]) -> tuple[Config, Journal, Processor]:
    config = fast_config(tmp_path, output=output, model={"min_confidence": 0.6})
    ensure_dirs(config)
    journal = Journal(config.state_dir)
    classifier = MarkerClassifier()
    return config, journal, Processor(config, journal, ClassifierPool(lambda: classifier))


def _photo(path: Path, seed: int, **kwargs: Any) -> Path:
    """make_photo, except that a picture without the marker (undecidable: it goes to review)
    also differs with ``seed``."""
    if kwargs.get("marker", True):
        return make_photo(path, seed=seed, **kwargs)
    pixels = np.random.default_rng(seed).integers(100, 140, size=(64, 96, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, "JPEG", quality=92)
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("original", ["keep", "move", "delete"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_different_picture_under_a_used_name_keeps_both_outputs(
        tmp_path: Path, kind: str, original: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    name, photo, output, outcome = KINDS[kind]
    if photo.get("fmt") == "HEIF" and not HEIF_AVAILABLE:
        pytest.skip("pillow-heif is not installed")
    settings = {**output, "original": original}
    if original == "move":
        settings["done_dir"] = "done"
    config, journal, processor = _setup(tmp_path, settings)
    inbox = config.inboxes[0]
    folder = inbox.review if outcome == "review" else inbox.output
    path = inbox.path / "phone" / name

    first_source = _photo(path, seed=1, **photo).read_bytes()  # the first phone's picture
    first = processor.process(path, inbox)
    assert (first.outcome, first.output) == (outcome, folder / "phone" / name)
    first_output = first.output.read_bytes()

    if path.exists():
        path.unlink()  # keep: the name is reused in place (a counter reset)
    _photo(path, seed=2, **photo)  # the second phone's, same name, other picture
    second_source = path.read_bytes()
    second = processor.process(path, inbox)
    stem, ext = name.rsplit(".", 1)
    assert (second.outcome, second.output) == (outcome, folder / "phone" / f"{stem}.1.{ext}")
    assert first.output.read_bytes() == first_output  # the first one's output is untouched
    assert second.output is not None
    if outcome == "review":
        assert second.output.read_bytes() == second_source
    else:
        a, b = load_upright(first.output), load_upright(second.output)
        assert red_edge(a)[0] == red_edge(b)[0] == "top"
        assert a.tobytes() != b.tobytes()
    records = [journal.lookup(str(path), _sha(data)) for data in (first_source, second_source)]
    assert [r.output if r else None for r in records] == [str(first.output),
                                                          str(second.output)]
    assert any("kept both" in r.getMessage() or "IMG_0001.1" in r.getMessage()
               for r in caplog.records if str(path) in r.getMessage())

    # the same picture again (same name, same bytes) writes nothing new
    before = _tree(folder)
    if not path.exists():
        path.write_bytes(second_source)
    again = processor.process(path, inbox)
    assert again.outcome == "skipped"
    assert _tree(folder) == before
    journal.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_daemon_keeps_both_photos_of_two_phones_with_original_delete(
        tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path, output={"original": "delete"})
    daemon, results = daemon_factory(config)
    inbox = config.inboxes[0]
    sources = [make_photo(tmp_path / "a.jpg", correction=90, seed=1).read_bytes(),
               make_photo(tmp_path / "b.jpg", correction=180, seed=2).read_bytes()]
    os.rename(tmp_path / "a.jpg", inbox.path / "IMG_0001.jpg")
    results.wait_count(1)
    os.rename(tmp_path / "b.jpg", inbox.path / "IMG_0001.jpg")
    done = results.wait_count(2)
    assert [r.outcome for r in done] == ["done", "done"]
    assert sorted(p.name for p in inbox.output.iterdir()) == ["IMG_0001.1.jpg", "IMG_0001.jpg"]
    a = load_upright(inbox.output / "IMG_0001.jpg")
    b = load_upright(inbox.output / "IMG_0001.1.jpg")
    assert red_edge(a)[0] == red_edge(b)[0] == "top"
    assert a.tobytes() != b.tobytes()
    assert not (inbox.path / "IMG_0001.jpg").exists()
    daemon.stop()
    with Journal(config.state_dir) as journal:
        records = [journal.lookup(str(inbox.path / "IMG_0001.jpg"), _sha(s)) for s in sources]
    assert [(r.outcome, r.output) if r else None for r in records] == [
        ("done", str(inbox.output / "IMG_0001.jpg")),
        ("done", str(inbox.output / "IMG_0001.1.jpg"))]


def test_fix_keeps_same_named_pictures_apart_and_a_second_run_writes_nothing(
        tmp_path: Path) -> None:
    for folder, seed, correction in (("a", 1, 90), ("b", 2, 180)):
        make_photo(tmp_path / folder / "x.jpg", correction=correction, seed=seed)
    _photo(tmp_path / "a" / "plain.jpg", marker=False, seed=3)
    _photo(tmp_path / "b" / "plain.jpg", marker=False, seed=4)
    out = tmp_path / "out"
    classifier = MarkerClassifier()

    def run() -> tuple[int, int, int, int]:
        summary = fix([tmp_path / "a", tmp_path / "b"], out,
                      ClassifierPool(lambda: classifier),
                      model_cfg=ModelConfig(min_confidence=0.6), limits=LimitsConfig(),
                      output=OutputConfig(), ignore_patterns=())
        return summary.written, summary.review, summary.failed, summary.unchanged

    assert run() == (2, 2, 0, 0)
    first = _tree(out)
    assert sorted(first) == ["review/plain.1.jpg", "review/plain.jpg", "x.1.jpg", "x.jpg"]
    assert first["x.jpg"] != first["x.1.jpg"]
    assert run() == (0, 0, 0, 4)  # and the count says so: nothing new was written
    assert _tree(out) == first


def test_a_name_that_is_not_utf8_is_journaled_and_processed(tmp_path: Path,
                                                            daemon_factory: Any) -> None:
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config)
    inbox = config.inboxes[0]
    name = os.fsdecode(b"caf\xe9 \xff.jpg")  # Latin-1 bytes from an old camera or share
    make_photo(tmp_path / "staging.jpg", correction=90)
    os.rename(tmp_path / "staging.jpg", inbox.path / name)
    (result,) = results.wait_count(1)
    assert result.outcome == "done"
    assert os.fsencode(result.path.name) == b"caf\xe9 \xff.jpg"
    assert os.path.exists(os.fsencode(inbox.output) + b"/caf\xe9 \xff.jpg")
    daemon.stop()
    with Journal(config.state_dir) as journal:
        (record,) = journal.interrupted_records() or [None]  # nothing left in progress
        assert record is None
        assert journal.counts()["done"] == 1
        st = os.stat(inbox.path / name)
        assert journal.is_known_unchanged(str(inbox.path / name), st.st_size, st.st_mtime_ns,
                                          st.st_ctime_ns, st.st_ino)


@pytest.mark.parametrize("stem", ["a" * (NAME_MAX - 4), "é" * 125 + "x"])
def test_names_of_255_bytes_are_processed_and_numbered_within_the_limit(
        tmp_path: Path, stem: str) -> None:
    name = stem + ".jpg"
    assert len(os.fsencode(name)) == NAME_MAX
    config, journal, processor = _setup(tmp_path, {"original": "delete"})
    inbox = config.inboxes[0]
    results: list[Result] = []
    for seed, correction in ((1, 90), (2, 270)):
        make_photo(inbox.path / name, correction=correction, seed=seed)
        results.append(processor.process(inbox.path / name, inbox))
    assert [r.outcome for r in results] == ["done", "done"]
    outputs = sorted(p.name for p in inbox.output.iterdir())
    assert len(outputs) == 2 and name in outputs
    numbered = next(n for n in outputs if n != name)
    assert len(os.fsencode(numbered)) <= NAME_MAX and numbered.endswith(".1.jpg")
    numbered.encode("utf-8")  # no character cut in two
    journal.close()


def test_numbered_name_shortens_the_stem_only_when_it_must() -> None:
    assert numbered_name("IMG_0001.jpg", 0) == "IMG_0001.jpg"
    assert numbered_name("IMG_0001.jpg", 2) == "IMG_0001.2.jpg"
    assert numbered_name("README", 1) == "README.1"
    long = "€" * 83 + ".jpeg"  # 254 bytes: with ".12" the stem must lose two characters
    out = numbered_name(long, 12)
    assert len(os.fsencode(out)) <= NAME_MAX and out.endswith(".12.jpeg")
    assert out.startswith("€" * 82) and "\udc82" not in out
