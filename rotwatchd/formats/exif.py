"""Edit EXIF (a TIFF structure) and XMP in place, keeping every other byte.

Rewriting EXIF through a generic library re-serialises it and can break maker notes, whose
internal offsets are absolute. These functions instead change values where they sit: the
Orientation value, the pixel-dimension values, the thumbnail (placed where the old one was when
it fits, else appended), and add an Orientation entry by moving only IFD0. Everything else is
left byte-for-byte as the camera wrote it.
"""

from __future__ import annotations

import contextlib
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

ORIENTATION = 0x0112
IMAGE_WIDTH = 0x0100
IMAGE_LENGTH = 0x0101
EXIF_IFD = 0x8769
PIXEL_X = 0xA002
PIXEL_Y = 0xA003
THUMB_OFFSET = 0x0201
THUMB_LENGTH = 0x0202
_SHORT, _LONG = 3, 4
TRANSPOSING = frozenset({5, 6, 7, 8})  # orientations whose correction swaps width and height


class ExifError(ValueError):
    """The TIFF structure is not readable where an edit was needed."""


@dataclass(frozen=True)
class _Entry:
    pos: int  # offset of the 12-byte entry in the TIFF block
    tag: int
    type: int
    count: int


class _Tiff:
    def __init__(self, tiff: bytes) -> None:
        if tiff[:4] not in (b"II*\x00", b"MM\x00*"):
            raise ExifError("not a TIFF header")
        self.buf = bytearray(tiff)
        self.end = "<" if tiff[:2] == b"II" else ">"

    def u16(self, pos: int) -> int:
        self._check(pos, 2)
        return int(struct.unpack_from(self.end + "H", self.buf, pos)[0])

    def u32(self, pos: int) -> int:
        self._check(pos, 4)
        return int(struct.unpack_from(self.end + "I", self.buf, pos)[0])

    def _check(self, pos: int, size: int) -> None:
        if pos < 0 or pos + size > len(self.buf):
            raise ExifError(f"offset {pos} outside the EXIF block")

    def entries(self, ifd: int) -> list[_Entry]:
        count = self.u16(ifd)
        self._check(ifd + 2, 12 * count + 4)
        return [_Entry(p, self.u16(p), self.u16(p + 2), self.u32(p + 4))
                for p in range(ifd + 2, ifd + 2 + 12 * count, 12)]

    def next_ifd(self, ifd: int) -> int:
        return self.u32(ifd + 2 + 12 * self.u16(ifd))

    def value(self, e: _Entry) -> int | None:
        """The entry's single inline SHORT/LONG value, else None."""
        if e.count != 1:
            return None
        if e.type == _SHORT:
            return self.u16(e.pos + 8)
        return self.u32(e.pos + 8) if e.type == _LONG else None

    def set_value(self, e: _Entry, value: int) -> bool:
        if e.count != 1 or e.type not in (_SHORT, _LONG):
            return False
        if e.type == _SHORT:
            if value > 0xFFFF:
                return False
            struct.pack_into(self.end + "HH", self.buf, e.pos + 8, value, 0)
        else:
            struct.pack_into(self.end + "I", self.buf, e.pos + 8, value)
        return True

    def swap(self, entries: list[_Entry], tag_a: int, tag_b: int) -> None:
        found = {e.tag: e for e in entries}
        a, b = found.get(tag_a), found.get(tag_b)
        if a is None or b is None:
            return
        va, vb = self.value(a), self.value(b)
        if va is not None and vb is not None:
            self.set_value(a, vb)
            self.set_value(b, va)


ThumbnailFn = Callable[[bytes], bytes]


def read_orientation(tiff: bytes) -> int | None:
    """IFD0 Orientation if it is a valid 1..8, else None (absent, 0, 9, wrong type...)."""
    try:
        t = _Tiff(tiff)
        entry = next((e for e in t.entries(t.u32(4)) if e.tag == ORIENTATION), None)
        value = t.value(entry) if entry else None
    except ExifError:
        return None
    return value if value is not None and 1 <= value <= 8 else None


def read_thumbnail(tiff: bytes) -> bytes | None:
    """The IFD1 JPEG thumbnail, None when there is none or it cannot be located."""
    try:
        t = _Tiff(tiff)
        ifd1 = t.next_ifd(t.u32(4))
        entries = {e.tag: e for e in t.entries(ifd1)} if ifd1 else {}
        off_e, len_e = entries.get(THUMB_OFFSET), entries.get(THUMB_LENGTH)
        off = t.value(off_e) if off_e else None
        length = t.value(len_e) if len_e else None
    except ExifError:
        return None
    if not off or not length or off + length > len(tiff):
        return None
    return tiff[off:off + length]


def fix_after_transform(tiff: bytes, orientation: int, rotate_thumbnail: ThumbnailFn) -> bytes:
    """EXIF for pixels already transformed by ``orientation``: Orientation=1, sizes, thumbnail.

    Raises ExifError when IFD0 cannot be read (then no viewer can read an Orientation either,
    so the caller may keep the block as it is). Damage further in (Exif IFD, IFD1) only skips
    that part of the edit.
    """
    t = _Tiff(tiff)
    ifd0 = t.u32(4)
    entries0 = t.entries(ifd0)
    for e in entries0:
        if e.tag == ORIENTATION:
            t.set_value(e, 1)  # an entry of a wrong type is invalid: viewers ignore it anyway
    if orientation in TRANSPOSING:
        t.swap(entries0, IMAGE_WIDTH, IMAGE_LENGTH)
        exif_ptr = next((t.value(e) for e in entries0 if e.tag == EXIF_IFD), None)
        if exif_ptr:
            with contextlib.suppress(ExifError):  # a broken Exif IFD is carried as it is
                t.swap(t.entries(exif_ptr), PIXEL_X, PIXEL_Y)
    with contextlib.suppress(ExifError):  # a broken IFD1 too: viewers read the main image
        _fix_thumbnail(t, t.next_ifd(ifd0), rotate_thumbnail)
    return bytes(t.buf)


def _fix_thumbnail(t: _Tiff, ifd1: int, rotate_thumbnail: ThumbnailFn) -> None:
    if ifd1 == 0:
        return
    entries = {e.tag: e for e in t.entries(ifd1)}
    if ORIENTATION in entries:
        t.set_value(entries[ORIENTATION], 1)
    off_e, len_e = entries.get(THUMB_OFFSET), entries.get(THUMB_LENGTH)
    if off_e is None or len_e is None:
        return
    off, length = t.value(off_e), t.value(len_e)
    if not off or not length or off + length > len(t.buf):
        return
    new = rotate_thumbnail(bytes(t.buf[off:off + length]))
    if len(new) <= length:  # in place; the unused tail becomes zero padding
        t.buf[off:off + length] = new + bytes(length - len(new))
    else:
        if len(t.buf) % 2:
            t.buf.append(0)
        off = len(t.buf)
        t.buf.extend(new)
    t.set_value(off_e, off)
    t.set_value(len_e, len(new))


def set_orientation(tiff: bytes, orientation: int) -> bytes:
    """EXIF with IFD0 Orientation = ``orientation``: patched in place, or IFD0 moved to the end
    of the block with one more entry (all other offsets stay valid). Raises ExifError."""
    t = _Tiff(tiff)
    ifd0 = t.u32(4)
    entries = t.entries(ifd0)
    for e in entries:
        if e.tag == ORIENTATION:
            if e.type == _SHORT and e.count == 1:
                t.set_value(e, orientation)
                return bytes(t.buf)
            break  # wrong type: replace the entry below
    raw = {e.tag: bytes(t.buf[e.pos:e.pos + 12]) for e in entries if e.tag != ORIENTATION}
    raw[ORIENTATION] = struct.pack(t.end + "HHIHH", ORIENTATION, _SHORT, 1, orientation, 0)
    if len(t.buf) % 2:
        t.buf.append(0)
    new_ifd = len(t.buf)
    t.buf.extend(struct.pack(t.end + "H", len(raw)))
    for tag in sorted(raw):
        t.buf.extend(raw[tag])
    t.buf.extend(struct.pack(t.end + "I", t.next_ifd(ifd0)))
    struct.pack_into(t.end + "I", t.buf, 4, new_ifd)
    return bytes(t.buf)


def minimal_exif(orientation: int) -> bytes:
    """A little-endian TIFF block holding only IFD0 Orientation."""
    return (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
            + struct.pack("<HHIHH", ORIENTATION, _SHORT, 1, orientation, 0) + struct.pack("<I", 0))


_XMP_ORIENT = re.compile(rb"(tiff:Orientation\s*=\s*[\"']|<tiff:Orientation>\s*)([0-9]+)")


def _xmp_value(name: bytes) -> re.Pattern[bytes]:
    return re.compile(rb"(" + name + rb"\s*=\s*[\"']|<" + name + rb">\s*)([0-9]+)")


_XMP_SWAPS = ((_xmp_value(rb"exif:PixelXDimension"), _xmp_value(rb"exif:PixelYDimension")),
              (_xmp_value(rb"tiff:ImageWidth"), _xmp_value(rb"tiff:ImageLength")))


def fix_xmp(packet: bytes, orientation: int) -> bytes:
    """XMP with tiff:Orientation set to 1 and, for transposing corrections, the XMP copies of
    the pixel dimensions swapped (both attribute and element forms)."""
    packet = _XMP_ORIENT.sub(rb"\g<1>1", packet)
    if orientation in TRANSPOSING:
        for pat_a, pat_b in _XMP_SWAPS:
            ma, mb = pat_a.search(packet), pat_b.search(packet)
            if ma and mb:
                packet = _replace_value(packet, ma, mb.group(2))
                packet = _replace_value(packet, pat_b.search(packet) or mb, ma.group(2))
    return packet


def _replace_value(packet: bytes, match: re.Match[bytes], value: bytes) -> bytes:
    return packet[:match.start(2)] + value + packet[match.end(2):]
