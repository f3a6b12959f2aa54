"""Turn a HEIC/HEIF image losslessly by editing its rotation property (pure bytes in, bytes out).

A HEIF file stores coded pixels plus "transformative properties" (``irot``: rotate
anticlockwise by 90-degree steps, ``imir``: mirror) that every reader applies before display.
Turning the displayed image is therefore a metadata edit: the primary item (and its thumbnails)
get a new or changed ``irot``; the HEVC data is not touched, so nothing is re-encoded and the
decoded result is the exact rotation of the decoded source.

Only the ``meta`` box changes, plus the Orientation value inside EXIF items, set to 1 in place
(readers apply irot; a stale EXIF value must not turn the image again). When ``meta`` grows (a
new ``irot`` property and association), every ``iloc`` file offset that points past it is moved
by the same amount. Anything unexpected (several ``ipma`` boxes, offsets into ``meta``, an index
that does not fit) raises HeifEditError and the caller re-encodes instead. Transform order
follows ISO/IEC 23008-12: ``irot`` before ``imir``; turning after a mirror is the mirror after
the opposite turn.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass

from rotwatchd.formats.exif import ExifError, fix_after_transform

# EXIF orientation of a pure clockwise correction -> irot steps (anticlockwise quarter turns).
IROT_STEPS = {6: 3, 3: 2, 8: 1}


class HeifEditError(ValueError):
    """The file's structure is outside what this module edits safely."""


@dataclass(frozen=True)
class _Box:
    type: bytes
    start: int
    body: int  # offset of the payload (after size/type/largesize)
    end: int


def _boxes(data: bytes, start: int, end: int) -> list[_Box]:
    out, pos = [], start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        body = pos + 8
        if size == 1:
            if pos + 16 > end:
                raise HeifEditError("truncated box header")
            size, body = struct.unpack_from(">Q", data, pos + 8)[0], pos + 16
        elif size == 0:
            size = end - pos
        if size < body - pos or pos + size > end:
            raise HeifEditError(f"box {kind!r} overruns its parent")
        out.append(_Box(kind, pos, body, pos + size))
        pos += size
    return out


def _only(boxes: list[_Box], kind: bytes) -> _Box:
    found = [b for b in boxes if b.type == kind]
    if len(found) != 1:
        raise HeifEditError(f"expected one {kind.decode()} box, found {len(found)}")
    return found[0]


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


Assoc = tuple[bool, int]  # (essential, 1-based property index)


def _parse_ipma(data: bytes, box: _Box) -> tuple[int, int, list[tuple[int, list[Assoc]]]]:
    version, flags = data[box.body], int.from_bytes(data[box.body + 1:box.body + 4], "big")
    pos = box.body + 4
    count = struct.unpack_from(">I", data, pos)[0]
    pos += 4
    entries = []
    for _ in range(count):
        if version < 1:
            item = struct.unpack_from(">H", data, pos)[0]
            pos += 2
        else:
            item = struct.unpack_from(">I", data, pos)[0]
            pos += 4
        n = data[pos]
        pos += 1
        assoc: list[Assoc] = []
        for _ in range(n):
            if flags & 1:
                raw = struct.unpack_from(">H", data, pos)[0]
                pos += 2
                assoc.append((bool(raw >> 15), raw & 0x7FFF))
            else:
                assoc.append((bool(data[pos] >> 7), data[pos] & 0x7F))
                pos += 1
        entries.append((item, assoc))
    if pos > box.end:
        raise HeifEditError("ipma overruns its box")
    return version, flags, entries


def _build_ipma(version: int, flags: int, entries: list[tuple[int, list[Assoc]]]) -> bytes:
    out = bytearray([version]) + flags.to_bytes(3, "big") + struct.pack(">I", len(entries))
    for item, assoc in entries:
        out += struct.pack(">H" if version < 1 else ">I", item) + bytes([len(assoc)])
        for essential, index in assoc:
            if flags & 1:
                out += struct.pack(">H", (essential << 15) | index)
            else:
                out.append((essential << 7) | index)
    return _box(b"ipma", bytes(out))


def _thumbnails_of(data: bytes, meta: list[_Box], primary: int) -> list[int]:
    iref = [b for b in meta if b.type == b"iref"]
    if not iref:
        return []
    wide = data[iref[0].body] != 0
    size = 4 if wide else 2
    found = []
    for ref in _boxes(data, iref[0].body + 4, iref[0].end):
        pos = ref.body
        source = int.from_bytes(data[pos:pos + size], "big")
        count = struct.unpack_from(">H", data, pos + size)[0]
        targets = [int.from_bytes(data[p:p + size], "big")
                   for p in range(pos + size + 2, pos + size + 2 + size * count, size)]
        if ref.type == b"thmb" and primary in targets:
            found.append(source)
    return found


def _turn_item(assoc: list[Assoc], props: list[_Box], data: bytes, steps: int,
               new_props: list[bytes]) -> list[Assoc]:
    """The item's associations with its irot replaced by (or a new irot inserted as) one
    that turns the displayed image by ``steps`` more; the new property goes to new_props.
    The old irot property is left in ipco: other items may share it."""
    kinds = [props[i - 1].type if 0 < i <= len(props) else b"" for _, i in assoc]
    if kinds.count(b"irot") > 1 or kinds.count(b"imir") > 1:
        raise HeifEditError("more than one irot/imir on an item")
    mirror_at = kinds.index(b"imir") if b"imir" in kinds else None
    if b"irot" in kinds:
        at = kinds.index(b"irot")
        current = data[props[assoc[at][1] - 1].body] & 3
    else:
        at = mirror_at if mirror_at is not None else len(assoc)
        current = 0
    after_mirror = mirror_at is not None and mirror_at < at
    angle = (current + (steps if mirror_at is None or after_mirror else -steps)) % 4
    new_props.append(_box(b"irot", bytes([angle])))
    index = len(props) + len(new_props)
    out = list(assoc)
    if b"irot" in kinds:
        out[at] = (True, index)
    else:
        out.insert(at, (True, index))
    return out


@dataclass(frozen=True)
class _Location:
    """One iloc entry; ``*_at`` are positions of the fields inside the iloc box bytes."""

    item: int
    in_file: bool  # construction method 0 and data in this file: offsets are file offsets
    base_at: int
    base: int
    extents: tuple[tuple[int, int, int], ...]  # (offset field position, offset, length)


def _locations(buf: bytes, body: int) -> tuple[int, int, list[_Location]]:
    """(offset field size, base field size, entries) of an iloc box held in ``buf``."""
    version = buf[body]
    off_size, len_size = buf[body + 4] >> 4, buf[body + 4] & 15
    base_size = buf[body + 5] >> 4
    idx_size = buf[body + 5] & 15 if version in (1, 2) else 0
    pos = body + 6
    wide = version >= 2

    def take(size: int) -> int:
        nonlocal pos
        value = int.from_bytes(buf[pos:pos + size], "big") if size else 0
        pos += size
        return value

    out = []
    for _ in range(take(4 if wide else 2)):
        item = take(4 if wide else 2)
        method = take(2) & 15 if version in (1, 2) else 0
        data_ref = take(2)
        base_at = pos
        base = take(base_size)
        extents = []
        for _ in range(take(2)):
            take(idx_size)
            off_at = pos
            offset = take(off_size)
            extents.append((off_at, offset, take(len_size)))
        out.append(_Location(item, method == 0 and data_ref == 0, base_at, base,
                             tuple(extents)))
    if pos > len(buf):
        raise HeifEditError("iloc overruns its box")
    return off_size, base_size, out


def _shift_iloc(data: bytes, box: _Box, meta: tuple[int, int], delta: int) -> bytes:
    """The iloc box with every file offset past the meta box (``meta`` = its start, end)
    moved by ``delta``. An offset into the meta box itself cannot be kept valid: refused."""
    buf = bytearray(data[box.start:box.end])
    off_size, base_size, entries = _locations(bytes(buf), box.body - box.start)

    def put(at: int, size: int, value: int) -> None:
        if size == 0:
            raise HeifEditError("an implicit zero offset cannot be moved")
        buf[at:at + size] = value.to_bytes(size, "big")

    for loc in (e for e in entries if e.in_file and delta):
        starts = [loc.base + offset for _, offset, _ in loc.extents] or [loc.base]
        if any(meta[0] <= at < meta[1] for at in starts):
            raise HeifEditError("an item's data lies inside the meta box")
        if loc.base >= meta[1]:  # one base offset moves every extent
            put(loc.base_at, base_size, loc.base + delta)
            continue
        for off_at, offset, _ in loc.extents:
            if loc.base + offset >= meta[1]:
                put(off_at, off_size, offset + delta)
    return bytes(buf)


def _exif_items(data: bytes, meta: list[_Box]) -> set[int]:
    iinf = [b for b in meta if b.type == b"iinf"]
    if not iinf:
        return set()
    first = iinf[0].body + (6 if data[iinf[0].body] == 0 else 8)
    found = set()
    for infe in _boxes(data, first, iinf[0].end):
        version = data[infe.body] if infe.type == b"infe" else 0
        if version == 2:
            item, kind = struct.unpack_from(">H", data, infe.body + 4)[0], infe.body + 8
        elif version == 3:
            item, kind = struct.unpack_from(">I", data, infe.body + 4)[0], infe.body + 10
        else:
            continue
        if data[kind:kind + 4] == b"Exif":
            found.add(item)
    return found


def _exif_orientation_reset(data: bytes, meta: list[_Box]) -> bytes:
    """``data`` with the Orientation of each EXIF item (stored whole in this file) set to 1,
    in place: readers apply irot, and a stale EXIF value must not turn the image again."""
    iloc = [b for b in meta if b.type == b"iloc"]
    items = _exif_items(data, meta)
    if not iloc or not items:
        return data
    out = bytearray(data)
    for loc in _locations(data, iloc[0].body)[2]:
        if loc.item not in items or not loc.in_file or len(loc.extents) != 1:
            continue
        start = loc.base + loc.extents[0][1]
        end = start + (loc.extents[0][2] or len(data) - start)
        if end > len(data) or end - start < 8:
            continue
        tiff_at = start + 4 + int.from_bytes(data[start:start + 4], "big")
        with contextlib.suppress(ExifError):
            fixed = fix_after_transform(data[tiff_at:end], 1, lambda thumb: thumb)
            out[tiff_at:end] = fixed[:end - tiff_at]  # same length: values changed in place
    return bytes(out)


def rotate_heif(data: bytes, orientation: int) -> bytes:
    """HEIF ``data`` whose displayed primary image (and its thumbnails) is turned as EXIF
    ``orientation`` 3, 6 or 8 says; the coded image data is untouched.

    Raises HeifEditError for other orientations and for structures it does not edit."""
    if orientation not in IROT_STEPS:
        raise HeifEditError(f"orientation {orientation} is not a pure rotation")
    try:
        return _rotate(data, orientation)
    except (struct.error, IndexError, OverflowError) as exc:  # fields past their box's end
        raise HeifEditError(f"damaged box structure ({exc})") from exc


def primary_transforms(data: bytes) -> list[tuple[str, int]]:
    """The primary item's transformative properties in the order readers apply them:
    ``("irot", anticlockwise quarter turns)`` and ``("imir", axis)`` (0: flip top-bottom,
    1: flip left-right, as libheif applies them). Properties of other kinds are left out.

    Raises HeifEditError for a structure this module does not read."""
    try:
        meta_box = _only(_boxes(data, 0, len(data)), b"meta")
        meta = _boxes(data, meta_box.body + 4, meta_box.end)
        primary = _primary_item(data, meta)
        iprp = _only(meta, b"iprp")
        iprp_children = _boxes(data, iprp.body, iprp.end)
        ipco = _only(iprp_children, b"ipco")
        props = _boxes(data, ipco.body, ipco.end)
        _, _, entries = _parse_ipma(data, _only(iprp_children, b"ipma"))
        assoc = next((a for item, a in entries if item == primary), [])
        found = [props[i - 1] for _, i in assoc if 0 < i <= len(props)]
        # both are one-byte properties: irot's angle in the low 2 bits, imir's axis in the low bit
        return [("irot", data[p.body] & 3) if p.type == b"irot" else ("imir", data[p.body] & 1)
                for p in found if p.type in (b"irot", b"imir")]
    except (struct.error, IndexError) as exc:
        raise HeifEditError(f"damaged box structure ({exc})") from exc


def _primary_item(data: bytes, meta: list[_Box]) -> int:
    pitm = _only(meta, b"pitm")
    return int(struct.unpack_from(">H" if data[pitm.body] == 0 else ">I", data, pitm.body + 4)[0])


def _rotate(data: bytes, orientation: int) -> bytes:
    meta_box = _only(_boxes(data, 0, len(data)), b"meta")
    meta = _boxes(data, meta_box.body + 4, meta_box.end)
    data = _exif_orientation_reset(data, meta)  # outside meta: box positions unchanged
    primary = _primary_item(data, meta)
    iprp = _only(meta, b"iprp")
    iprp_children = _boxes(data, iprp.body, iprp.end)
    ipco, ipma = _only(iprp_children, b"ipco"), _only(iprp_children, b"ipma")
    props = _boxes(data, ipco.body, ipco.end)
    version, flags, entries = _parse_ipma(data, ipma)
    new_props: list[bytes] = []
    targets = {primary, *_thumbnails_of(data, meta, primary)}
    entries = [(item, _turn_item(assoc, props, data, IROT_STEPS[orientation], new_props)
                if item in targets else assoc) for item, assoc in entries]
    if primary not in {item for item, _ in entries}:
        raise HeifEditError("the primary item has no property associations")
    if len(props) + len(new_props) > (0x7FFF if flags & 1 else 0x7F):
        raise HeifEditError("too many properties for the ipma index size")
    new_ipco = _box(b"ipco", data[ipco.body:ipco.end] + b"".join(new_props))
    children = [new_ipco if c.type == b"ipco" else
                _build_ipma(version, flags, entries) if c.type == b"ipma" else
                data[c.start:c.end] for c in iprp_children]
    new_iprp = _box(b"iprp", b"".join(children))
    # The rebuilt meta box always has a plain 8-byte header.
    delta = (len(new_iprp) - (iprp.end - iprp.start)) + 8 - (meta_box.body - meta_box.start)
    parts = []
    for child in meta:
        if child.type == b"iprp":
            parts.append(new_iprp)
        elif child.type == b"iloc":
            parts.append(_shift_iloc(data, child, (meta_box.start, meta_box.end), delta))
        else:
            parts.append(data[child.start:child.end])
    new_meta = _box(b"meta", data[meta_box.body:meta_box.body + 4] + b"".join(parts))
    return data[:meta_box.start] + new_meta + data[meta_box.end:]
