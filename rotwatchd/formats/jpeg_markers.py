"""Read the marker structure of a JPEG file (pure parsing, no I/O).

A JPEG is SOI, then segments (``FF xx`` + 2-byte length + payload), then one or more scans of
entropy-coded data, then EOI. Walking that structure finds truncation (no EOI before the end of
the data) and corruption (bytes that are not a marker where one must be) without decoding a
pixel, and gives the writer the metadata segments (EXIF, XMP, ICC, comments...) to carry over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SOI = 0xD8
EOI = 0xD9
SOS = 0xDA
DQT = 0xDB
DHT = 0xC4
COM = 0xFE
APP0 = 0xE0
APP1 = 0xE1
APP2 = 0xE2
APP14 = 0xEE
# Start-of-frame markers; C4 (DHT), C8 (JPG) and CC (DAC) sit in the same range but are not.
SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                         0xCE, 0xCF})
PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
LOSSLESS_SOF = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field

EXIF_PREFIX = b"Exif\x00\x00"
XMP_PREFIX = b"http://ns.adobe.com/xap/1.0/\x00"
ICC_PREFIX = b"ICC_PROFILE\x00"
MPF_PREFIX = b"MPF\x00"


class JpegStructureError(ValueError):
    """The bytes are not a well-formed JPEG. ``kind`` is "truncated" or "corrupt"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Segment:
    """One marker segment: ``data[start:end]`` is ``FF marker len len payload``."""

    marker: int
    start: int
    end: int
    payload: bytes

    def is_app(self, marker: int, prefix: bytes) -> bool:
        return self.marker == marker and self.payload.startswith(prefix)

    @property
    def is_metadata(self) -> bool:
        """APPn and COM segments: what describes the image rather than encodes it."""
        return 0xE0 <= self.marker <= 0xEF or self.marker == COM


@dataclass(frozen=True)
class Component:
    ident: int
    h_samp: int
    v_samp: int
    quant_table: int


@dataclass(frozen=True)
class Frame:
    """The SOF segment: size, precision and sampling of each component."""

    marker: int
    precision: int
    height: int
    width: int
    components: tuple[Component, ...]

    @property
    def progressive(self) -> bool:
        return self.marker in PROGRESSIVE_SOF

    @property
    def mcu_size(self) -> tuple[int, int]:
        """(width, height) in pixels of one MCU: 8x8 for a single component."""
        if len(self.components) == 1:
            return 8, 8
        return (8 * max(c.h_samp for c in self.components),
                8 * max(c.v_samp for c in self.components))


@dataclass(frozen=True)
class JpegLayout:
    """Segments before the first scan, the frame, where the first scan starts, where EOI ends."""

    header: tuple[Segment, ...]
    frame: Frame
    first_scan: int  # offset of the first SOS marker
    end: int  # offset just after EOI; data[end:] is trailing data (MPF images, motion video...)

    def find(self, marker: int, prefix: bytes) -> Segment | None:
        return next((s for s in self.header if s.is_app(marker, prefix)), None)


def _parse_frame(seg: Segment) -> Frame:
    p = seg.payload
    if len(p) < 6 or len(p) < 6 + 3 * p[5]:
        raise JpegStructureError("corrupt", "SOF segment too short")
    comps = tuple(Component(p[6 + 3 * i], p[7 + 3 * i] >> 4, p[7 + 3 * i] & 15, p[8 + 3 * i])
                  for i in range(p[5]))
    if not comps or any(not (1 <= c.h_samp <= 4 and 1 <= c.v_samp <= 4) for c in comps):
        raise JpegStructureError("corrupt", "invalid component sampling in SOF")
    return Frame(seg.marker, p[0], int.from_bytes(p[1:3], "big"), int.from_bytes(p[3:5], "big"),
                 comps)


#: An 0xFF that starts a real marker: not a stuffed byte (FF 00), a restart marker (FF D0-D7)
#: or a fill byte (FF FF: the next 0xFF is looked at instead).
_MARKER_IN_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _skip_entropy_data(data: bytes, pos: int) -> int:
    """Offset of the first real marker after entropy-coded data starting at ``pos``
    (one regular-expression scan in C: a 12 MP photo's few thousand 0xFF bytes cost ~1 ms)."""
    found = _MARKER_IN_SCAN.search(data, pos)
    if found is None:
        raise JpegStructureError("truncated", "data ends inside a scan (no EOI)")
    return found.start()


def parse_jpeg(data: bytes) -> JpegLayout:
    """Walk the whole marker structure of ``data``; raise JpegStructureError if it is broken.

    Cost is one ``bytes.find`` pass over the entropy data: no Huffman decoding.
    """
    if not data.startswith(b"\xff\xd8"):
        raise JpegStructureError("corrupt", "no SOI marker")
    header: list[Segment] = []
    frame: Frame | None = None
    first_scan = -1
    pos, n = 2, len(data)
    while True:
        while pos < n and data[pos] == 0xFF and pos + 1 < n and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 2 > n:
            raise JpegStructureError("truncated", f"data ends at offset {pos} before EOI")
        if data[pos] != 0xFF:
            raise JpegStructureError("corrupt", f"expected a marker at offset {pos}")
        marker = data[pos + 1]
        if marker == EOI:
            if frame is None or first_scan < 0:
                raise JpegStructureError("corrupt", "EOI before any image data")
            return JpegLayout(tuple(header), frame, first_scan, pos + 2)
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (SOI, 0x00):
            raise JpegStructureError("corrupt", f"unexpected marker FF{marker:02X} at {pos}")
        if pos + 4 > n:
            raise JpegStructureError("truncated", "data ends inside a segment header")
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2:
            raise JpegStructureError("corrupt", f"bad segment length at offset {pos}")
        end = pos + 2 + length
        if end > n:
            raise JpegStructureError("truncated", f"segment FF{marker:02X} runs past the end")
        seg = Segment(marker, pos, end, data[pos + 4:end])
        if marker in SOF_MARKERS:
            if frame is not None:
                raise JpegStructureError("corrupt", "more than one SOF segment")
            frame = _parse_frame(seg)
        if marker == SOS:
            if frame is None:
                raise JpegStructureError("corrupt", "scan before frame header")
            if first_scan < 0:
                first_scan = pos
            pos = _skip_entropy_data(data, end)
            continue
        if first_scan < 0:
            header.append(seg)
        pos = end


#: Code-length counts of the four Huffman tables of the JPEG standard (Annex K.3): what most
#: cameras and encoders without "optimize" write. (DC luminance, DC chroma, AC luminance,
#: AC chroma; the class/id byte is not compared.)
_STANDARD_HUFFMAN_COUNTS = frozenset({
    bytes([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]),
    bytes([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]),
    bytes([0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D]),
    bytes([0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77]),
})


def has_optimized_huffman(layout: JpegLayout) -> bool:
    """True when a Huffman table before the first scan is not one of the standard tables
    (the encoder optimised them for this image): a re-encode should optimise too to keep the
    file as small. Tables are told apart by their code-length counts."""
    for seg in layout.header:
        if seg.marker != DHT:
            continue
        payload, pos = seg.payload, 0
        while pos + 17 <= len(payload):
            counts = payload[pos + 1:pos + 17]
            if counts not in _STANDARD_HUFFMAN_COUNTS:
                return True
            pos += 17 + sum(counts)
    return False


def build_jpeg(head: list[bytes], body: bytes) -> bytes:
    """SOI + ``head`` segments (complete, marker included) + ``body`` (tables, scans, EOI)."""
    return b"".join([b"\xff\xd8", *head, body])


def segment_bytes(marker: int, payload: bytes) -> bytes:
    """Encode one segment; raises ValueError when the payload exceeds the 64 KiB limit."""
    if len(payload) > 0xFFFF - 2:
        raise ValueError(f"segment FF{marker:02X} payload too large ({len(payload)} bytes)")
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload
