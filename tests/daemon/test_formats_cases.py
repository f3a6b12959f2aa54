"""Containers that carry their own orientation, on every path: check, fix, the daemon.

The two case files were rebuilt from public bug reports of other orientation tools (see
tests/fixtures/): a TIFF with IFD0 Orientation 6 and a multi-picture JPEG (MPO) whose primary
image has EXIF Orientation 6. The right output of both is the scene upright, 128x96, with
Orientation 1. The golden upright TIFF is computed here without Pillow's own handling of the
tag: the file's tag is patched to 1, the stored pixels decoded and turned as EXIF 6 says.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pillow_heif
import pytest
from helpers import fast_config
from helpers.paths import FIXTURES_DIR
from helpers.writer_images import needs_jpegtran, stored_from_upright, upright_array
from PIL import Image, PngImagePlugin

from rotwatchd.cli.main import main
from rotwatchd.config import LimitsConfig, ModelConfig, OutputConfig
from rotwatchd.fix.oneshot import assess, fix
from rotwatchd.formats.exif import read_orientation, set_orientation
from rotwatchd.formats.image import UPRIGHT_TRANSPOSE
from rotwatchd.formats.jpeg_markers import parse_jpeg
from rotwatchd.model.base import OrientationClassifier
from rotwatchd.service.decision import CORRECTION_FOR_ORIENTATION

FIXTURES = FIXTURES_DIR
TIFF_CASE = FIXTURES / "c06_tiff_orient6.tif"
MPO_CASE = FIXTURES / "c07_mpo_orient6.jpg"
MIRRORED = (2, 4, 5, 7)


class NoModel:
    """A model source for files whose own orientation decides: asking it fails the test."""

    def lease(self) -> AbstractContextManager[OrientationClassifier]:
        raise AssertionError("the model was asked about a file whose orientation is stated")


def _tiff_golden() -> np.ndarray:
    """The case TIFF upright, from its stored pixels (tag patched to 1) turned as 6 says."""
    stored = Image.open(io.BytesIO(set_orientation(TIFF_CASE.read_bytes(), 1)))
    golden = np.asarray(stored.convert("RGB").transpose(UPRIGHT_TRANSPOSE[6]))
    _assert_scene_upright(golden)
    return golden


def _assert_scene_upright(pixels: np.ndarray) -> None:
    """The case scene, 128 wide and 96 high: red block top-left, blue block bottom-right."""
    assert pixels.shape[:2] == (96, 128)
    red, blue = pixels[5, 5].astype(int), pixels[-5, -5].astype(int)
    assert red[0] > 180 and red[2] < 80, red
    assert blue[2] > 180 and blue[0] < 80, blue


def _tiff_tag(path: Path) -> object:
    """IFD0 Orientation as stored (read before load: Pillow 13+ drops it when decoding)."""
    with Image.open(path) as im:
        assert im.format == "TIFF"
        return im.tag_v2.get(0x0112)


def _assert_upright_tiff(path: Path) -> None:
    assert _tiff_tag(path) == 1
    with Image.open(path) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), _tiff_golden())  # LZW: exact


# --- item: the TIFF Orientation tag ------------------------------------------------------


def test_tiff_case_check_trusts_the_tag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", str(TIFF_CASE)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "path": str(TIFF_CASE), "correction": 90, "confidence": 1.0, "source": "exif",
        "decision": "rotate"}


def test_tiff_case_fix_writes_the_upright_tiff(tmp_path: Path) -> None:
    assert main(["fix", str(TIFF_CASE), "-o", str(tmp_path / "out")]) == 0
    _assert_upright_tiff(tmp_path / "out" / TIFF_CASE.name)


def test_tiff_case_daemon_never_asks_the_model(tmp_path: Path, daemon_factory: Any,
                                               classifier: Any) -> None:
    """min_confidence 0: the model would have decided (and once turned it upside down)."""
    config = fast_config(tmp_path, model={"min_confidence": 0})
    daemon, results = daemon_factory(config)
    staging = tmp_path / "staging.tif"
    shutil.copyfile(TIFF_CASE, staging)
    os.rename(staging, config.inboxes[0].path / "scan.tif")
    (result,) = results.wait_count(1)
    assert result.outcome == "done", result.detail
    assert result.decision.source == "exif" and result.decision.correction == 90
    assert classifier.calls == 0
    _assert_upright_tiff(config.inboxes[0].output / "scan.tif")


# --- every container with an orientation of its own, every orientation ---------------------


def _stored_file(path: Path, fmt: str, orientation: int) -> None:
    """``upright_array`` stored turned, with ``orientation`` in the container's own field."""
    stored = stored_from_upright(Image.fromarray(upright_array(96, 64)), orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    if fmt == "TIFF":
        stored.save(path, "TIFF", tiffinfo={0x0112: orientation}, compression="tiff_lzw")
    elif fmt == "PNG":  # eXIf chunk
        stored.save(path, "PNG", exif=exif.tobytes())
    elif fmt == "PNG_TEXT":  # ImageMagick's zTXt "Raw profile type exif": name, length, hex
        block = exif.tobytes().hex()
        text = f"\nexif\n{len(block) // 2:8d}\n" + "\n".join(
            block[i:i + 72] for i in range(0, len(block), 72)) + "\n"
        chunks = PngImagePlugin.PngInfo()
        chunks.add_text("Raw profile type exif", text, zip=True)
        stored.save(path, "PNG", pnginfo=chunks)
    elif fmt == "WEBP":
        stored.save(path, "WEBP", lossless=True, exact=True, exif=exif.tobytes())
    else:  # pillow-heif turns the EXIF value into the file's irot/imir properties
        pillow_heif.from_pillow(stored).save(path, quality=95, exif=exif.tobytes())


def _orientation_in(path: Path, fmt: str) -> object:
    if fmt == "TIFF":
        return _tiff_tag(path)
    with Image.open(path) as im:
        im.load()
        assert "Raw profile type exif" not in im.info  # its stale value went into eXIf
        raw = im.info.get("exif")
    return read_orientation(raw[6:] if raw.startswith(b"Exif\x00\x00") else raw)


@pytest.mark.parametrize("orientation", range(2, 9))
@pytest.mark.parametrize("fmt", ["TIFF", "PNG", "PNG_TEXT", "WEBP", "HEIF"])
def test_container_orientation_decides_and_the_copy_is_upright(tmp_path: Path, fmt: str,
                                                               orientation: int) -> None:
    """TIFF tag, PNG eXIf or legacy EXIF text, WebP EXIF, HEIF irot/imir: trusted like JPEG
    EXIF (no model), and the copy shows the upright picture to a reader that ignores every
    orientation field."""
    src = tmp_path / f"in.{fmt.lower()}"
    _stored_file(src, fmt, orientation)
    decision = assess(src, NoModel(), 0.0, LimitsConfig()).decision
    assert (decision.action, decision.source) == ("rotate", "exif")
    assert decision.correction == CORRECTION_FOR_ORIENTATION[orientation]
    assert decision.mirror == (orientation in MIRRORED)

    summary = fix([src], tmp_path / "out", NoModel(), model_cfg=ModelConfig(min_confidence=0.0),
                  limits=LimitsConfig(), output=OutputConfig(), ignore_patterns=())
    assert (summary.written, summary.review, summary.failed) == (1, 0, 0)
    out = tmp_path / "out" / src.name
    with Image.open(out) as im:
        assert im.format == fmt.removesuffix("_TEXT")
        shown = np.asarray(im.convert("RGB")).astype(int)
    upright = upright_array(96, 64).astype(int)
    if fmt == "HEIF":  # lossy; the copy keeps its irot/imir, which every HEIF reader applies
        assert out.read_bytes() == src.read_bytes()
        assert np.abs(shown - upright).mean() < 6
    else:
        assert np.array_equal(shown, upright)
        assert _orientation_in(out, fmt) == 1


# --- item: multi-picture JPEG ------------------------------------------------------------


def _jpegtran_rotate_90(jpeg: bytes) -> np.ndarray:
    jpegtran = shutil.which("jpegtran")
    assert jpegtran is not None
    out = subprocess.run([jpegtran, "-perfect", "-rotate", "90"], input=jpeg,
                         capture_output=True, check=True).stdout
    return np.asarray(Image.open(io.BytesIO(out)))


def _assert_mpo_output(path: Path) -> None:
    """Primary turned exactly as jpegtran turns it (lossless), Orientation 1, the second
    image kept byte for byte after it."""
    source = MPO_CASE.read_bytes()
    src_layout = parse_jpeg(source)
    data = path.read_bytes()
    layout = parse_jpeg(data)
    assert data[layout.end:] == source[src_layout.end:]
    assert Image.open(io.BytesIO(source[src_layout.end:])).size == (96, 128)  # still there
    with Image.open(io.BytesIO(data[:layout.end])) as primary:
        assert primary.getexif().get(0x0112) == 1
        pixels = np.asarray(primary)
    assert np.array_equal(pixels, _jpegtran_rotate_90(source[:src_layout.end]))
    _assert_scene_upright(pixels)


def test_mpo_case_check_rotates_the_primary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", str(MPO_CASE)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "path": str(MPO_CASE), "correction": 90, "confidence": 1.0, "source": "exif",
        "decision": "rotate"}


@needs_jpegtran
def test_mpo_case_fix_rotates_the_primary_losslessly(tmp_path: Path) -> None:
    assert main(["fix", str(MPO_CASE), "-o", str(tmp_path / "out")]) == 0
    _assert_mpo_output(tmp_path / "out" / MPO_CASE.name)


@needs_jpegtran
def test_mpo_case_daemon_rotates_the_primary_losslessly(tmp_path: Path, daemon_factory: Any,
                                                       classifier: Any) -> None:
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config)
    staging = tmp_path / "staging.jpg"
    shutil.copyfile(MPO_CASE, staging)
    os.rename(staging, config.inboxes[0].path / "stereo.jpg")
    (result,) = results.wait_count(1)
    assert result.outcome == "done", result.detail
    assert "lossless-jpeg" in result.detail
    assert classifier.calls == 0
    _assert_mpo_output(config.inboxes[0].output / "stereo.jpg")


# --- item: check reports a mirror --------------------------------------------------------


def _tagged_jpeg(path: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(upright_array(96, 64)).save(path, "JPEG", exif=exif.tobytes())
    return path


@pytest.mark.parametrize("orientation", MIRRORED)
def test_check_reports_the_mirror(tmp_path: Path, orientation: int,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    photo = _tagged_jpeg(tmp_path / "m.jpg", orientation)
    correction = CORRECTION_FOR_ORIENTATION[orientation]
    assert main(["check", "--json", str(photo)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "path": str(photo), "correction": correction, "confidence": 1.0, "source": "exif",
        "decision": "rotate", "mirror": True, "exif_orientation": orientation}
    assert main(["check", str(photo)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{photo}: rotate correction {correction} then mirror left-right "
        f"(EXIF orientation {orientation}) (confidence 1.000, exif)")


def test_check_reports_a_mirror_stated_by_the_heif_container(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "m.heic"
    _stored_file(src, "HEIF", 5)
    assert main(["check", "--json", str(src)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["correction"], answer["mirror"], answer["exif_orientation"]) == (90, True, 5)


def test_tiff_metadata_follows_the_tag_the_decoder_applied(tmp_path: Path) -> None:
    """Exif-IFD and XMP pixel dimensions describe the stored 64x96 image: the upright copy
    (96x64) swaps them, and the XMP orientation becomes 1 like the tag."""
    stored = stored_from_upright(Image.fromarray(upright_array(96, 64)), 6)
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
           b'02/22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/"'
           b' xmlns:exif="http://ns.adobe.com/exif/1.0/" tiff:Orientation="6" '
           b'exif:PixelXDimension="64" exif:PixelYDimension="96"/></rdf:RDF></x:xmpmeta>')
    src = tmp_path / "scan.tif"
    stored.save(src, tiffinfo={0x0112: 6, 0x8769: {0xA002: 64, 0xA003: 96}, 700: xmp})
    summary = fix([src], tmp_path / "out", NoModel(), model_cfg=ModelConfig(min_confidence=0.0),
                  limits=LimitsConfig(), output=OutputConfig(), ignore_patterns=())
    assert summary.written == 1
    out = tmp_path / "out" / src.name
    assert _tiff_tag(out) == 1
    with Image.open(out) as im:
        assert im.size == (96, 64)
        assert dict(im.getexif().get_ifd(0x8769)) == {0xA002: 96, 0xA003: 64}
        packet = im.tag_v2[700]
        assert np.array_equal(np.asarray(im.convert("RGB")), upright_array(96, 64))
    assert b'tiff:Orientation="1"' in packet
    assert b'exif:PixelXDimension="96" exif:PixelYDimension="64"' in packet
