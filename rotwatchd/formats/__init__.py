"""What rotwatchd knows about image files: sniffing, limits, decoding, JPEG markers, EXIF and
HEIF boxes.

The bottom layer: it imports nothing else from rotwatchd, and ``output/`` (which writes) and the
pipeline both build on it.
"""
