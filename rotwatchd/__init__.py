"""rotwatchd: watch folders and write upright copies of rotated photos."""

__version__ = "0.1.0"
