"""Every EXIF orientation, in every format, comes out upright exactly once."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from helpers.writer_images import (
    NO_TAG,
    assert_upright,
    camera_exif,
    camera_jpeg,
    needs_jpegtran,
    psnr,
    srgb_icc,
    stored_from_upright,
    upright_array,
    xmp_packet,
)
from PIL import Image

from rotwatchd.formats.exif import minimal_exif
from rotwatchd.formats.image import UPRIGHT_TRANSPOSE, inspect, load_upright
from rotwatchd.formats.jpeg_markers import parse_jpeg
from rotwatchd.formats.sniff import ImageProblem, UnsupportedFormat
from rotwatchd.output.writer import write_corrected

W, H = 96, 64  # MCU-aligned for 4:2:0


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _raw_pixels(path: Path) -> tuple[np.ndarray, int | None]:
    """Decoded pixels exactly as stored (no orientation applied) and the Orientation tag."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int), im.getexif().get(0x0112)


@needs_jpegtran
@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_every_orientation_upright_once(tmp_path: Path, orientation: int) -> None:
    upright = upright_array(W, H)
    src = tmp_path / "in.jpg"
    camera_jpeg(src, upright, orientation)
    before = _sha(src)
    info = inspect(src)
    assert info.exif_orientation == orientation

    result = write_corrected(src, tmp_path / "out.jpg", orientation=orientation)

    assert result.action == ("copied" if orientation == 1 else "lossless-jpeg")
    pixels, tag = _raw_pixels(result.path)
    assert tag in (None, 1)
    assert_upright(pixels, upright)
    # A viewer honouring EXIF shows the same thing: nothing is rotated a second time.
    assert_upright(np.asarray(load_upright(result.path)), upright)
    assert _sha(src) == before


@pytest.mark.parametrize("orientation", range(2, 9))
@pytest.mark.parametrize("size", [(100, 75), (97, 61)], ids=["100x75", "97x61"])
def test_jpeg_not_mcu_aligned_keeps_every_pixel(tmp_path: Path, orientation: int,
                                                size: tuple[int, int]) -> None:
    """Partial edge blocks: never trimmed; re-encoded once with the source's tables where a
    lossless transform is impossible, and close to the exact transform of the decoded input."""
    upright = upright_array(*size)
    src = tmp_path / "odd.jpg"
    camera_jpeg(src, upright, orientation, subsampling=2)
    result = write_corrected(src, tmp_path / "o.jpg", orientation=orientation)

    with Image.open(src) as s:
        exact = np.asarray(s.convert("RGB").transpose(UPRIGHT_TRANSPOSE[orientation]))
        src_tables = s.quantization
    out, tag = _raw_pixels(result.path)
    assert tag == 1
    assert out.shape == upright.shape  # no edge trimmed
    assert psnr(out, exact) > 35.0  # measured ~37 dB at q92 on this sharp-edged picture
    if result.action == "re-encoded":
        assert any("not a multiple" in n for n in result.notes)
        with Image.open(result.path) as o:
            transposed = orientation >= 5
            for i, table in src_tables.items():
                t = np.array(table).reshape(8, 8)
                assert np.array_equal(np.array(o.quantization[i]).reshape(8, 8),
                                      t.T if transposed else t)
    else:  # transpose (5) keeps the partial edges at the right/bottom: still lossless
        assert orientation == 5 and result.action == "lossless-jpeg"


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_lossless_formats_every_orientation(tmp_path: Path, fmt: str, orientation: int) -> None:
    upright = upright_array(W, H)
    stored = stored_from_upright(Image.fromarray(upright), orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"
    src = tmp_path / f"in.{fmt.lower()}"
    extra = {"lossless": True} if fmt == "WEBP" else {}
    stored.save(src, fmt, exif=exif.tobytes(), icc_profile=srgb_icc(), **extra)
    info = inspect(src)
    assert info.format == fmt
    if fmt == "TIFF" and info.exif_orientation is None:
        pass  # this Pillow applies TIFF orientation on load: nothing is left to do
    else:
        assert info.exif_orientation == orientation

    result = write_corrected(src, tmp_path / f"out.{fmt.lower()}",
                             orientation=info.exif_orientation or 1)

    pixels, tag = _raw_pixels(result.path)
    assert tag in (None, 1)
    assert np.array_equal(pixels, upright)  # lossless formats stay exact
    with Image.open(result.path) as im:
        assert im.getexif().get(0x010F) == "TestCam"
        assert im.info.get("icc_profile") == srgb_icc()
    assert np.array_equal(np.asarray(load_upright(result.path)), upright)


def test_png_text_chunks_and_xmp_carried(tmp_path: Path) -> None:
    from PIL import PngImagePlugin

    upright = upright_array(W, H)
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Test Photographer")
    info.add_itxt("Description", "Sonnenuntergang", lang="de")
    info.add_itxt("XML:com.adobe.xmp", xmp_packet(6, H, W).decode())
    src = tmp_path / "in.png"
    stored_from_upright(Image.fromarray(upright), 6).save(src, pnginfo=info)
    out = write_corrected(src, tmp_path / "out.png", orientation=6).path
    with Image.open(out) as im:
        assert isinstance(im, PngImagePlugin.PngImageFile)
        assert im.text["Author"] == "Test Photographer"
        assert im.text["Description"] == "Sonnenuntergang"
        assert 'tiff:Orientation="1"' in im.text["XML:com.adobe.xmp"]
        assert np.array_equal(np.asarray(im.convert("RGB")), upright)


@pytest.mark.parametrize("fmt", ["BMP", "GIF"])
def test_formats_without_exif_rotate_exactly(tmp_path: Path, fmt: str) -> None:
    upright = Image.fromarray(upright_array(W, H)).quantize(64) if fmt == "GIF" \
        else Image.fromarray(upright_array(W, H))
    src = tmp_path / f"in.{fmt.lower()}"
    stored_from_upright(upright, 8).save(src, fmt)
    out = write_corrected(src, tmp_path / f"out.{fmt.lower()}", orientation=8).path
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(upright.convert("RGB")))


def test_animated_gif_is_not_rotated(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), (80 * i, 0, 0)) for i in range(3)]
    src = tmp_path / "anim.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=50)
    assert inspect(src).animated
    with pytest.raises(UnsupportedFormat):
        write_corrected(src, tmp_path / "out.gif", orientation=6)
    assert not (tmp_path / "out.gif").exists()


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_heic_with_orientation_comes_out_upright(tmp_path: Path, orientation: int) -> None:
    """pillow-heif applies the stored orientation on open: inspect reports nothing left to do,
    the copy displays upright, and a further correction is applied exactly once."""
    pytest.importorskip("pillow_heif")
    upright = upright_array(W, H)
    stored = stored_from_upright(Image.fromarray(upright), orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    src = tmp_path / "IMG_1234.HEIC"
    stored.save(src, "HEIF", exif=exif.tobytes(), quality=95)

    info = inspect(src)
    assert info.format == "HEIF" and info.exif_orientation in (None, 1)
    assert (info.width, info.height) == (W, H)
    result = write_corrected(src, tmp_path / "out.heic", orientation=info.exif_orientation or 1)
    assert result.action == "copied"
    assert_upright(np.asarray(load_upright(result.path)), upright)

    # The model then says "turn 90 CW" (orientation 6) of the displayed image: done once.
    turned = tmp_path / "turned.heic"
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(turned, "HEIF", quality=95)
    fixed = write_corrected(turned, tmp_path / "fixed.heic", orientation=6)
    assert fixed.action == "lossless-heif"
    assert_upright(np.asarray(load_upright(fixed.path)), upright)


@pytest.mark.parametrize("existing", ["tag", "no-tag", "no-exif"])
def test_tag_mode_changes_only_the_exif_segment(tmp_path: Path, existing: str) -> None:
    upright = upright_array(W, H)
    src = tmp_path / "in.jpg"
    if existing == "no-exif":
        stored_from_upright(Image.fromarray(upright), 6).save(src, quality=92)
    else:
        camera_jpeg(src, upright, 6, exif_orientation=6 if existing == "tag" else NO_TAG)
    data = src.read_bytes()
    result = write_corrected(src, tmp_path / "out.jpg", orientation=6, mode="tag")
    out = result.path.read_bytes()

    assert result.action == "tagged"
    layout = parse_jpeg(out)
    seg = layout.find(0xE1, b"Exif\x00\x00")
    assert seg is not None
    assert out[seg.end:] == data[len(data) - (len(out) - seg.end):]  # all after EXIF identical
    assert out[:seg.start] == data[:seg.start]
    with Image.open(result.path) as im:
        assert im.getexif().get(0x0112) == 6
        if existing != "no-exif":
            assert im.getexif().get(0x010F) == "TestCam"
            assert im.getexif().get_ifd(0x8825)[1] == "N"
    assert_upright(np.asarray(load_upright(result.path)), upright)


def test_upright_is_a_byte_identical_copy_or_hard_link(tmp_path: Path) -> None:
    src = tmp_path / "up.jpg"
    camera_jpeg(src, upright_array(W, H), 1)
    copied = write_corrected(src, tmp_path / "a" / "up.jpg", orientation=1)
    linked = write_corrected(src, tmp_path / "b" / "up.jpg", orientation=1,
                             hardlink_upright=True)
    assert copied.action == "copied" and copied.path.read_bytes() == src.read_bytes()
    assert copied.path.stat().st_mtime_ns == src.stat().st_mtime_ns
    assert linked.action == "hardlinked" and linked.path.stat().st_ino == src.stat().st_ino
    again = write_corrected(src, tmp_path / "b" / "up.jpg", orientation=1, hardlink_upright=True)
    assert again.path.stat().st_ino == src.stat().st_ino
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temp leftovers


def test_minimal_exif_roundtrips() -> None:
    exif = Image.Exif()
    exif.load(b"Exif\x00\x00" + minimal_exif(7))
    assert exif[0x0112] == 7


def test_refuses_to_overwrite_source_and_bad_orientation(tmp_path: Path) -> None:
    src = tmp_path / "x.jpg"
    camera_jpeg(src, upright_array(W, H), 6)
    with pytest.raises(ValueError):
        write_corrected(src, src, orientation=6)
    with pytest.raises(ValueError):
        write_corrected(src, tmp_path / "y.jpg", orientation=9)
    buf = io.BytesIO(src.read_bytes())
    assert Image.open(buf).getexif()[0x0112] == 6


def test_trailing_data_kept_and_mpf_index_dropped(tmp_path: Path) -> None:
    """Data after EOI (motion-photo video, MPF secondary images) is carried in both modes; the
    MPF index, whose offsets would now point to the wrong bytes, is dropped with a note."""
    src = tmp_path / "motion.jpg"
    camera_jpeg(src, upright_array(W, H), 6)
    data = src.read_bytes()
    mpf = b"\xff\xe2\x00\x0aMPF\x00MM\x00*"  # a (minimal) MPF APP2 after SOI
    trailer = b"\x00\x00\x00\x18ftypmp42" + bytes(range(200))
    src.write_bytes(data[:2] + mpf + data[2:] + trailer)
    pixels = write_corrected(src, tmp_path / "p.jpg", orientation=6)
    tagged = write_corrected(src, tmp_path / "t.jpg", orientation=6, mode="tag")
    for result in (pixels, tagged):
        out = result.path.read_bytes()
        assert out.endswith(trailer)
        assert out[:parse_jpeg(out).end] + trailer == out
    assert b"MPF\x00" not in pixels.path.read_bytes()[:4096]
    assert any("MPF" in note for note in pixels.notes)


def test_tag_mode_on_png_rotates_pixels_and_says_so(tmp_path: Path) -> None:
    upright = upright_array(W, H)
    src = tmp_path / "in.png"
    stored_from_upright(Image.fromarray(upright), 8).save(src)
    result = write_corrected(src, tmp_path / "out.png", orientation=8, mode="tag")
    assert result.action == "re-encoded" and any("JPEG-only" in n for n in result.notes)
    assert np.array_equal(np.asarray(Image.open(result.path).convert("RGB")), upright)


@needs_jpegtran
@pytest.mark.parametrize("orientation", [2, 6, 7])
def test_grayscale_jpeg_lossless(tmp_path: Path, orientation: int) -> None:
    upright = np.asarray(Image.fromarray(upright_array(W, H)).convert("L"))
    src = tmp_path / "g.jpg"
    stored_from_upright(Image.fromarray(upright), orientation).save(src, quality=90)
    result = write_corrected(src, tmp_path / "o.jpg", orientation=orientation)
    assert result.action == "lossless-jpeg"
    with Image.open(result.path) as im:
        assert im.mode == "L"
        assert_upright(np.asarray(im.convert("RGB")),
                       np.asarray(Image.fromarray(upright).convert("RGB")))


def test_jpeg_bomb_refused_by_writer(tmp_path: Path) -> None:
    src = tmp_path / "big.jpg"
    camera_jpeg(src, upright_array(W, H), 6)
    with pytest.raises(ImageProblem) as caught:
        write_corrected(src, tmp_path / "o.jpg", orientation=6, max_pixels=W * H - 1)
    assert caught.value.reason == "too-large"
    assert not (tmp_path / "o.jpg").exists()


def _png_rgb16(width: int, height: int) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow decodes these to 8 bits)."""
    import struct
    import zlib

    arr = (np.arange(height * width * 3).reshape(height, width, 3) * 997 % 65536).astype(">u2")
    raw = b"".join(b"\x00" + arr[r].tobytes() for r in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2,
                                                             0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16_bit_colour_goes_to_review_instead_of_losing_precision(tmp_path: Path) -> None:
    src = tmp_path / "scan.png"
    src.write_bytes(_png_rgb16(12, 8))
    assert inspect(src).format == "PNG"  # fine for the model...
    with pytest.raises(UnsupportedFormat, match="16-bit"):  # ...but not rewritten at 8 bits
        write_corrected(src, tmp_path / "out.png", orientation=6)
    gray16 = tmp_path / "gray16.png"
    Image.fromarray((np.arange(96).reshape(8, 12) * 600).astype(np.uint16)).save(gray16)
    out = write_corrected(gray16, tmp_path / "g.png", orientation=6).path
    with Image.open(gray16) as a, Image.open(out) as b:
        assert np.array_equal(np.asarray(b), np.asarray(a.transpose(Image.Transpose.ROTATE_270)))


@needs_jpegtran
def test_tag_mode_with_full_exif_segment_rotates_pixels(tmp_path: Path) -> None:
    """An EXIF block at the 64 KiB limit has no room for one more entry: no crash, no
    half-written tag, the pixels are turned instead and the result says why."""
    upright = upright_array(W, H)
    stored = stored_from_upright(Image.fromarray(upright), 6)
    limit = 0xFFFF - 2 - len(b"Exif\x00\x00")  # largest TIFF block one segment can hold
    base = len(camera_exif(orientation=NO_TAG, width=1, height=1, thumbnail=b"\xff\xd8"))
    exif = camera_exif(orientation=NO_TAG, width=stored.width, height=stored.height,
                       thumbnail=b"\xff\xd8" + bytes(limit - base - 64))
    exif = exif + bytes(limit - len(exif))  # exactly full
    src = tmp_path / "full.jpg"
    stored.save(src, quality=92, exif=b"Exif\x00\x00" + exif)
    result = write_corrected(src, tmp_path / "out.jpg", orientation=6, mode="tag")
    assert result.action == "lossless-jpeg"
    assert any("EXIF segment full" in note for note in result.notes)
    pixels, tag = _raw_pixels(result.path)
    assert tag in (None, 1)
    assert_upright(pixels, upright)


@pytest.mark.parametrize("orientation", [1, 6])
def test_target_failure_is_an_oserror_not_a_bad_image(tmp_path: Path, orientation: int) -> None:
    """A target that cannot be written is the output's problem (OSError), never reported as
    a broken source (ImageProblem would get the original quarantined)."""
    src = tmp_path / "ok.jpg"
    camera_jpeg(src, upright_array(W, H), orientation)
    before = _sha(src)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(OSError):
        write_corrected(src, blocker / "ok.jpg", orientation=orientation)
    assert _sha(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_folder", "ok.jpg"]


@pytest.mark.parametrize(("binary", "why"), [
    ("", "jpegtran not found"),
    ("/nonexistent/jpegtran", "lossless transform failed"),
])
def test_without_jpegtran_reencodes_with_source_tables(tmp_path: Path, binary: str,
                                                       why: str) -> None:
    """A pip-only install (no jpegtran) still writes an upright, metadata-complete copy,
    re-encoded once with the source's own quantisation tables, and says so."""
    upright = upright_array(W, H)
    src = tmp_path / "in.jpg"
    camera_jpeg(src, upright, 6)
    result = write_corrected(src, tmp_path / "out.jpg", orientation=6, jpegtran=binary)
    assert result.action == "re-encoded" and any(why in note for note in result.notes)
    pixels, tag = _raw_pixels(result.path)
    assert tag == 1
    assert_upright(pixels, upright)
    with Image.open(src) as a, Image.open(result.path) as b:
        for i, table in a.quantization.items():
            assert list(b.quantization[i]) == list(np.array(table).reshape(8, 8).T.ravel())
        assert b.getexif()[0x010F] == "TestCam" and b.info["icc_profile"] == srgb_icc()


@pytest.mark.parametrize(("orientation", "expected"), [(6, 0), (3, 1)])
def test_reencode_keeps_chroma_of_422(tmp_path: Path, orientation: int, expected: int) -> None:
    """A 4:2:2 source turned by 90 degrees would be 4:4:0, which Pillow cannot write: it
    becomes 4:4:4 (no chroma dropped); a 180-degree turn stays 4:2:2."""
    from PIL import JpegImagePlugin

    src = tmp_path / "odd422.jpg"
    camera_jpeg(src, upright_array(100, 75), orientation, subsampling=1)
    result = write_corrected(src, tmp_path / "o.jpg", orientation=orientation)
    assert result.action == "re-encoded"
    with Image.open(result.path) as im:
        assert isinstance(im, JpegImagePlugin.JpegImageFile)
        assert JpegImagePlugin.get_sampling(im) == expected


def test_tag_mode_keeps_an_unreadable_exif_block(tmp_path: Path) -> None:
    src = tmp_path / "weird.jpg"
    stored_from_upright(Image.fromarray(upright_array(W, H)), 6).save(
        src, quality=90, exif=b"Exif\x00\x00" + b"not a TIFF header at all" * 4)
    data = src.read_bytes()
    out = write_corrected(src, tmp_path / "o.jpg", orientation=6, mode="tag").path.read_bytes()
    seg = parse_jpeg(out).find(0xE1, b"Exif\x00\x00")
    assert seg is not None
    assert out[seg.end:] == data[seg.start:]  # the old block and all after it, untouched
    with Image.open(io.BytesIO(out)) as im:
        assert im.getexif()[0x0112] == 6
