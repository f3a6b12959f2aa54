"""In-place EXIF/XMP edits: only the values that must change do, in either byte order."""

from __future__ import annotations

import os

import pytest
from helpers.writer_images import MAKER_NOTE, camera_exif
from PIL import Image

from rotwatchd.formats import exif as exif_edit


def _pillow_exif(block: bytes) -> Image.Exif:
    exif = Image.Exif()
    exif.load(b"Exif\x00\x00" + block)
    return exif


def _big_endian_exif(orientation: int) -> bytes:
    exif = Image.Exif()  # Pillow writes Motorola (MM) order, as Canon and Nikon do
    exif[0x0112] = orientation
    exif[0x010F] = "BigEndianCam"
    sub = exif.get_ifd(0x8769)
    sub[0xA002], sub[0xA003] = 4000, 3000
    sub[0x9003] = "2026:11:27 10:11:12"
    block = exif.tobytes()
    assert block.startswith(b"Exif\x00\x00MM")
    return block[6:]


@pytest.mark.parametrize("orientation", [3, 6])
def test_fix_after_transform_big_endian(orientation: int) -> None:
    fixed = exif_edit.fix_after_transform(_big_endian_exif(orientation), orientation,
                                          lambda thumb: thumb)
    exif = _pillow_exif(fixed)
    assert exif[0x0112] == 1 and exif[0x010F] == "BigEndianCam"
    sub = exif.get_ifd(0x8769)
    assert (sub[0xA002], sub[0xA003]) == ((3000, 4000) if orientation == 6 else (4000, 3000))
    assert sub[0x9003] == "2026:11:27 10:11:12"


def _thumb_of(block: bytes) -> bytes:
    thumb = exif_edit.read_thumbnail(block)
    assert thumb is not None
    return thumb


@pytest.mark.parametrize("grow", [False, True], ids=["in-place", "appended"])
def test_thumbnail_replaced_in_place_or_appended(grow: bool) -> None:
    old_thumb = b"\xff\xd8" + bytes(300) + b"\xff\xd9"
    block = camera_exif(orientation=6, width=64, height=48, thumbnail=old_thumb)
    new_thumb = b"\xff\xd8" + (b"\x11" * (900 if grow else 100)) + b"\xff\xd9"
    fixed = exif_edit.fix_after_transform(block, 6, lambda thumb: new_thumb)
    assert _thumb_of(block) == old_thumb and _thumb_of(fixed) == new_thumb
    assert (len(fixed) > len(block)) == grow
    # Everything else (maker note, GPS...) still reads back the same.
    sub = _pillow_exif(fixed).get_ifd(0x8769)
    assert sub[0x927C] == MAKER_NOTE
    assert (sub[0xA002], sub[0xA003]) == (48, 64)


def test_set_orientation_adds_the_tag_by_moving_ifd0_only() -> None:
    block = camera_exif(orientation="none", width=64, height=48,
                        thumbnail=b"\xff\xd8" + bytes(50) + b"\xff\xd9")
    assert exif_edit.read_orientation(block) is None
    tagged = exif_edit.set_orientation(block, 8)
    assert tagged[:len(block)][8:] == block[8:]  # old bytes untouched, IFD0 appended
    exif = _pillow_exif(tagged)
    assert exif[0x0112] == 8 and exif[0x010F] == "TestCam"
    assert exif.get_ifd(0x8769)[0x927C] == MAKER_NOTE
    assert exif.get_ifd(0x8825)[1] == "N"
    assert _thumb_of(tagged) == _thumb_of(block)
    assert exif_edit.read_orientation(exif_edit.set_orientation(tagged, 3)) == 3


def test_unreadable_blocks() -> None:
    assert exif_edit.read_orientation(os.urandom(64)) is None
    assert exif_edit.read_orientation(b"II*\x00\xff\xff\x00\x00") is None
    with pytest.raises(exif_edit.ExifError):
        exif_edit.fix_after_transform(b"II*\x00\x00\x10\x00\x00", 6, lambda thumb: thumb)
    with pytest.raises(exif_edit.ExifError):
        exif_edit.set_orientation(b"garbage!", 6)


def test_fix_xmp_attribute_and_element_forms() -> None:
    attr = (b'<rdf:Description tiff:Orientation="8" exif:PixelXDimension="4000" '
            b'exif:PixelYDimension="3000" tiff:ImageWidth="4000" tiff:ImageLength="3000"/>')
    fixed = exif_edit.fix_xmp(attr, 8)
    assert fixed == (b'<rdf:Description tiff:Orientation="1" exif:PixelXDimension="3000" '
                     b'exif:PixelYDimension="4000" tiff:ImageWidth="3000" '
                     b'tiff:ImageLength="4000"/>')
    elem = (b"<tiff:Orientation>3</tiff:Orientation><exif:PixelXDimension>640"
            b"</exif:PixelXDimension><exif:PixelYDimension>480</exif:PixelYDimension>")
    assert exif_edit.fix_xmp(elem, 3) == elem.replace(b">3<", b">1<")  # 180: sizes unchanged
    assert b"<tiff:Orientation>1<" in exif_edit.fix_xmp(elem, 6)
    assert b"PixelXDimension>480<" in exif_edit.fix_xmp(elem, 6)


def test_hostile_thumbnail_is_carried_not_decoded() -> None:
    """A 'thumbnail' whose header claims 60000x60000 pixels must not be decoded."""
    import io

    from rotwatchd.output.metadata import thumbnail_rotator

    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = (60000).to_bytes(2, "big") * 2
    bomb = bytes(data)
    assert thumbnail_rotator(6, 90)(bomb) == bomb
    assert thumbnail_rotator(6, 90)(b"\xff\xd8garbage") == b"\xff\xd8garbage"
