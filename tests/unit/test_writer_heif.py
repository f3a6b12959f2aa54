"""HEIC/HEIF turned losslessly: only the rotation property changes, never the coded image."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers.writer_images import assert_upright, stored_from_upright, upright_array
from PIL import Image

from rotwatchd.formats.exif import read_orientation
from rotwatchd.formats.heif import HeifEditError, rotate_heif
from rotwatchd.formats.image import UPRIGHT_TRANSPOSE, inspect, load_upright
from rotwatchd.output.writer import write_corrected

pillow_heif = pytest.importorskip("pillow_heif")

W, H = 96, 64


def _heic(path: Path, pixels: Image.Image, exif_orientation: int, thumbnail: bool = True) -> None:
    exif = Image.Exif()
    exif[0x0112] = exif_orientation
    heif = pillow_heif.from_pillow(pixels)
    heif.save(path, quality=90, exif=exif.tobytes(), thumbnails=[48] if thumbnail else [])


@pytest.fixture(autouse=True)
def _list_thumbnails(monkeypatch: pytest.MonkeyPatch) -> None:
    """imagefile tells pillow-heif to skip thumbnails (the daemon never needs them); the
    oracle here reads them, so the option is on for these tests and restored after."""
    monkeypatch.setattr(pillow_heif.options, "THUMBNAILS", True)


def _decoded(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """Main image and thumbnails, as any HEIF reader shows them (transforms applied)."""
    heif = pillow_heif.open_heif(path)
    image = heif[0]
    thumbs = [np.asarray(image.get_thumbnail(i).to_pillow())
              for i in range(len(image.info.get("thumbnails", [])))]
    return np.asarray(image.to_pillow()), thumbs


def _mdat(data: bytes) -> bytes:
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"mdat":
            return data[pos + 8:pos + size]
        pos += size
    raise AssertionError("no mdat box")


@pytest.mark.parametrize("correction", [3, 6, 8])
@pytest.mark.parametrize("stored_orientation", [1, 6, 2, 5], ids=["plain", "irot", "imir",
                                                                 "irot+imir"])
def test_heif_turned_by_property_exactly(tmp_path: Path, stored_orientation: int,
                                         correction: int) -> None:
    src = tmp_path / "IMG_0001.HEIC"
    _heic(src, Image.fromarray(upright_array(W, H)), stored_orientation)
    before, thumbs_before = _decoded(src)
    data = src.read_bytes()

    result = write_corrected(src, tmp_path / "out.HEIC", orientation=correction)

    assert result.action == "lossless-heif"
    assert src.read_bytes() == data
    out = result.path.read_bytes()
    old_mdat, new_mdat = _mdat(data), _mdat(out)
    assert len(old_mdat) == len(new_mdat)
    # The coded image is untouched; at most the EXIF item's Orientation value (2 bytes) moved.
    assert sum(a != b for a, b in zip(old_mdat, new_mdat, strict=True)) <= 2
    assert len(out) - len(data) < 64  # only a property or two were added
    after, thumbs_after = _decoded(result.path)
    method = UPRIGHT_TRANSPOSE[correction]
    assert np.array_equal(after, np.asarray(Image.fromarray(before).transpose(method)))
    assert len(thumbs_after) == len(thumbs_before) == 1
    assert np.array_equal(thumbs_after[0],
                          np.asarray(Image.fromarray(thumbs_before[0]).transpose(method)))
    assert result.path.stat().st_mtime_ns == src.stat().st_mtime_ns
    assert inspect(result.path).format == "HEIF"


def test_model_correction_of_a_turned_heic_is_upright(tmp_path: Path) -> None:
    upright = upright_array(W, H)
    src = tmp_path / "turned.heic"
    _heic(src, stored_from_upright(Image.fromarray(upright), 6), 1)
    result = write_corrected(src, tmp_path / "fixed.heic", orientation=6)
    assert result.action == "lossless-heif"
    assert_upright(np.asarray(load_upright(result.path)), upright)


def test_mirrored_correction_is_reencoded(tmp_path: Path) -> None:
    upright = upright_array(W, H)
    src = tmp_path / "mirror.heic"
    _heic(src, stored_from_upright(Image.fromarray(upright), 2), 1, thumbnail=False)
    result = write_corrected(src, tmp_path / "fixed.heic", orientation=2)
    assert result.action == "re-encoded"
    assert_upright(np.asarray(load_upright(result.path)), upright)


def test_rotate_heif_refuses_what_it_cannot_edit(tmp_path: Path) -> None:
    src = tmp_path / "a.heic"
    _heic(src, Image.fromarray(upright_array(W, H)), 1)
    data = src.read_bytes()
    with pytest.raises(HeifEditError):
        rotate_heif(data, 2)  # mirrors are not a property edit here
    with pytest.raises(HeifEditError):
        rotate_heif(b"\x00\x00\x00\x10ftypheic\x00\x00\x00\x00", 6)  # no meta box
    ipma = data.find(b"ipma") - 4
    size = struct.unpack_from(">I", data, ipma)[0]
    broken = data[:ipma] + struct.pack(">I", size + 4096) + data[ipma + 4:]
    with pytest.raises(HeifEditError):
        rotate_heif(broken, 6)  # a box that overruns its parent
    buf = io.BytesIO(rotate_heif(data, 6))
    assert Image.open(buf).size == (H, W)


def test_exif_item_orientation_reset_in_place(tmp_path: Path) -> None:
    """The EXIF item keeps every byte but the Orientation value, which becomes 1."""
    src = tmp_path / "e.heic"
    _heic(src, Image.fromarray(upright_array(W, H)), 6)
    data = src.read_bytes()
    exif_at = data.find(b"MM\x00*")
    if exif_at < 0:
        exif_at = data.find(b"II*\x00")
    assert exif_at > 0
    assert read_orientation(data[exif_at:]) == 6
    out = rotate_heif(data, 3)
    new_at = exif_at + (len(out) - len(data))  # the EXIF item lies after the grown meta box
    assert read_orientation(out[new_at:]) == 1
    changed = [i for i, (a, b) in enumerate(zip(data[exif_at:], out[new_at:], strict=False))
               if a != b]
    assert 0 < len(changed) <= 2


def _iloc_v1(entries: list[tuple[int, int, int, list[tuple[int, int]]]]) -> bytes:
    """iloc version 1, 4-byte offsets/lengths/bases: (item, method, base, [(offset, len)])."""
    body = bytes([1, 0, 0, 0, 0x44, 0x40]) + struct.pack(">H", len(entries))
    for item, method, base, extents in entries:
        body += struct.pack(">HHHIH", item, method, 0, base, len(extents))
        for offset, length in extents:
            body += struct.pack(">II", offset, length)
    return struct.pack(">I4s", 8 + len(body), b"iloc") + body


def test_iloc_offsets_past_meta_move_and_others_stay() -> None:
    from rotwatchd.formats.heif import _boxes, _locations, _shift_iloc

    meta = (100, 500)
    box_bytes = _iloc_v1([
        (1, 0, 0, [(600, 10), (700, 5)]),  # absolute extents after meta: both move
        (2, 0, 800, [(0, 10), (20, 10)]),  # base after meta: only the base moves
        (3, 0, 50, [(0, 10)]),             # data before meta: unchanged
        (4, 1, 0, [(4, 10)]),              # idat-relative (method 1): unchanged
        (5, 0, 60, [(500, 10)]),           # base before, extent after meta: extent moves
    ])
    box = _boxes(box_bytes, 0, len(box_bytes))[0]
    shifted = _shift_iloc(box_bytes, box, meta, 9)
    locs = {loc.item: loc for loc in _locations(shifted, box.body)[2]}
    assert [e[1] for e in locs[1].extents] == [609, 709]
    assert locs[2].base == 809 and [e[1] for e in locs[2].extents] == [0, 20]
    assert locs[3].base == 50 and locs[3].extents[0][1] == 0
    assert locs[4].extents[0][1] == 4
    assert locs[5].base == 60 and locs[5].extents[0][1] == 509
    inside = _iloc_v1([(1, 0, 0, [(200, 10)])])
    with pytest.raises(HeifEditError):
        _shift_iloc(inside, _boxes(inside, 0, len(inside))[0], meta, 9)
