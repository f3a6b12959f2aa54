"""imagefile: bad input is named precisely, orientation is read safely, load_upright is cheap."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers.writer_images import NO_TAG, assert_upright, camera_jpeg, upright_array
from PIL import Image

from rotwatchd.formats.image import inspect, load_upright
from rotwatchd.formats.jpeg_markers import parse_jpeg
from rotwatchd.formats.sniff import ImageProblem, UnsupportedFormat


def _problem(path: Path, **kwargs: int) -> str:
    with pytest.raises(ImageProblem) as caught:
        inspect(path, **kwargs)
    assert str(path) in str(caught.value)  # the one log line names the file
    return caught.value.reason


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    camera_jpeg(path, upright_array(320, 240), 1)
    return path


def test_good_jpeg(photo: Path) -> None:
    info = inspect(photo)
    assert (info.format, info.width, info.height, info.exif_orientation, info.animated) == (
        "JPEG", 320, 240, 1, False)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "zero.jpg").write_bytes(b"")
    assert _problem(tmp_path / "zero.jpg") == "empty"


def test_text_file_named_jpg(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("shopping list: milk, eggs\n" * 20)
    assert _problem(tmp_path / "notes.jpg") == "not-an-image"


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "album.jpg").mkdir()
    assert _problem(tmp_path / "album.jpg") == "not-an-image"


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_truncated_jpeg(tmp_path: Path, photo: Path, fraction: float) -> None:
    data = photo.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: int(len(data) * fraction)])
    assert _problem(cut) == "truncated"


def test_truncated_png(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(upright_array(200, 150)).save(buf, "PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])
    assert _problem(cut) == "truncated"


def _segment_start(data: bytes, marker: int) -> int:
    """Offset of the image's own segment (not one inside the EXIF thumbnail)."""
    layout = parse_jpeg(data)
    return next(s.start for s in layout.header if s.marker == marker)


def test_corrupt_jpeg_header(tmp_path: Path, photo: Path) -> None:
    data = bytearray(photo.read_bytes())
    dqt = _segment_start(bytes(data), 0xDB)
    data[dqt:dqt + 2] = b"\x12\x34"  # a table segment whose marker is garbage
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(bytes(data))
    assert _problem(bad) == "corrupt"


def test_corrupt_jpeg_undefined_quant_table(tmp_path: Path, photo: Path) -> None:
    """Structure intact, content undecodable: the decoder's error says corrupt."""
    data = bytearray(photo.read_bytes())
    sof = _segment_start(bytes(data), 0xC0)
    data[sof + 12] = 3  # first component's quantisation table: one that is never defined
    bad = tmp_path / "noquant.jpg"
    bad.write_bytes(bytes(data))
    assert _problem(bad) == "corrupt"


def test_corrupt_png_crc(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(upright_array(64, 48)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    idat = data.find(b"IDAT")
    data[idat + 10] ^= 0xFF
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(data))
    assert _problem(bad) == "corrupt"


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image (the classic decompression bomb head)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def test_decompression_bomb_png(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(60000, 60000))
    assert bomb.stat().st_size < 2000
    assert _problem(bomb) == "too-large"


def test_decompression_bomb_jpeg_header(tmp_path: Path, photo: Path) -> None:
    data = bytearray(photo.read_bytes())
    sof = parse_jpeg(bytes(data)).frame
    assert sof.width == 320
    at = _segment_start(bytes(data), 0xC0)
    data[at + 5:at + 9] = struct.pack(">HH", 60000, 60000)
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(bytes(data))
    assert _problem(bomb) == "too-large"


def test_max_pixels_is_configurable(photo: Path) -> None:
    assert _problem(photo, max_pixels=320 * 240 - 1) == "too-large"
    assert inspect(photo, max_pixels=320 * 240).width == 320
    with pytest.raises(ImageProblem) as caught:
        load_upright(photo, max_pixels=1000)
    assert caught.value.reason == "too-large"


NOBODY = 65534


def _reason_as_nobody(path: Path) -> str:
    """inspect(path) in a forked child that has dropped root for uid/gid 65534 (nobody)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                inspect(path)
                answer = "readable"
            except ImageProblem as exc:
                answer = exc.reason
            os.write(write_end, answer.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return answer


def test_unreadable_file() -> None:
    """chmod 000. As root, permissions do not block reads, so the check runs in a forked
    child that drops to uid 65534 (nobody): a real EACCES either way."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)  # nobody may look inside the folder, not read the file
        path = Path(folder) / "secret.jpg"
        camera_jpeg(path, upright_array(32, 32), 1)
        os.chmod(path, 0)
        if os.geteuid() != 0:
            assert _problem(path) == "unreadable"
        else:
            assert _reason_as_nobody(path) == "unreadable"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_valid_orientation_is_read(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / "o.jpg"
    camera_jpeg(path, upright_array(64, 48), orientation)
    assert inspect(path).exif_orientation == orientation


@pytest.mark.parametrize("tag", [
    pytest.param((3, 1, struct.pack("<H", 0)), id="zero"),
    pytest.param((3, 1, struct.pack("<H", 9)), id="nine"),
    pytest.param((3, 1, struct.pack("<H", 65535)), id="65535"),
    pytest.param((2, 2, b"6\x00"), id="ascii"),
    pytest.param((5, 1, struct.pack("<II", 6, 1)), id="rational"),
    pytest.param((3, 2, struct.pack("<HH", 6, 6)), id="two-values"),
    pytest.param(NO_TAG, id="absent"),
])
def test_invalid_orientation_is_absent(tmp_path: Path, tag: object) -> None:
    upright = upright_array(64, 48)
    path = tmp_path / "o.jpg"
    camera_jpeg(path, upright, 1, exif_orientation=tag)
    assert inspect(path).exif_orientation is None
    assert_upright(np.asarray(load_upright(path)), upright)  # and nothing is rotated


def test_garbage_exif_block(tmp_path: Path) -> None:
    path = tmp_path / "g.jpg"
    Image.fromarray(upright_array(64, 48)).save(path, exif=b"Exif\x00\x00" + os.urandom(200))
    assert inspect(path).exif_orientation is None
    assert load_upright(path).size == (64, 48)


@pytest.mark.parametrize(("head", "name"), [
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(40), "JPEG2000"),
    (b"8BPS\x00\x01" + bytes(40), "PSD"),
    (b"\x00\x00\x00\x1cftypavif" + bytes(40), "AVIF"),
    (b"\xff\x0a" + bytes(40), "JPEG XL"),
    (b"P6\n640 480\n255\n" + bytes(40), "PNM"),
    (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
    (b"v/1\x01" + bytes(40), "OpenEXR"),
    (b"\xff\xd8\xff\xf7\x00\x0b\x08\x00\x10\x00\x10\x01\x01\x11\x00" + bytes(40),
     "JPEG-LS"),
])
def test_known_but_unsupported_formats(tmp_path: Path, head: bytes, name: str) -> None:
    path = tmp_path / "picture.jpg"
    path.write_bytes(head)
    with pytest.raises(UnsupportedFormat) as caught:
        inspect(path)
    assert caught.value.format == name


def test_format_comes_from_content_not_name(tmp_path: Path) -> None:
    png_named_jpg = tmp_path / "really_a_png.jpg"
    Image.fromarray(upright_array(40, 30)).save(png_named_jpg, "PNG")
    jpg_named_png = tmp_path / "really_a_jpeg.png"
    Image.fromarray(upright_array(40, 30)).save(jpg_named_png, "JPEG")
    assert inspect(png_named_jpg).format == "PNG"
    assert inspect(jpg_named_png).format == "JPEG"


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animation_is_flagged(tmp_path: Path, fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), (90 * i, 40, 200 - 90 * i)) for i in range(3)]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=40)
    assert inspect(path).animated
    still = tmp_path / f"still.{fmt.lower()}"
    frames[0].save(still, fmt)
    assert not inspect(still).animated


def test_load_upright_downscales_jpeg_and_applies_orientation(tmp_path: Path) -> None:
    upright = upright_array(1200, 1600)  # portrait, stored landscape with orientation 6
    path = tmp_path / "big.jpg"
    camera_jpeg(path, upright, 6)
    small = load_upright(path, max_side=224)
    assert small.mode == "RGB" and max(small.size) == 224 and small.size[1] == 224
    ref = np.asarray(Image.fromarray(upright).resize(small.size, Image.Resampling.BILINEAR))
    assert_upright(np.asarray(small), ref, min_psnr=22.0)


def test_load_upright_flattens_alpha_and_16_bit(tmp_path: Path) -> None:
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent: must become white, not black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.asarray(load_upright(tmp_path / "a.png")).min() == 255
    deep = (np.arange(30 * 20).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    out = np.asarray(load_upright(tmp_path / "d.png"))
    assert out.shape == (20, 30, 3) and out.max() > 200 and out[0, 0, 0] == 0


@pytest.mark.parametrize("tag", [(50706, b"\x01\x04\x00\x00"), (254, 1)],
                         ids=["DNGVersion", "preview-first"])
def test_tiff_based_camera_raw_goes_to_review(tmp_path: Path, tag: tuple[int, object]) -> None:
    from PIL import TiffImagePlugin

    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[tag[0]] = tag[1]
    path = tmp_path / "DSC_0001.NEF"
    Image.fromarray(upright_array(40, 30)).save(path, "TIFF", tiffinfo=info)
    with pytest.raises(UnsupportedFormat, match="raw"):
        inspect(path)
    plain = tmp_path / "scan.tif"
    Image.fromarray(upright_array(40, 30)).save(plain, "TIFF")
    assert inspect(plain).format == "TIFF"
