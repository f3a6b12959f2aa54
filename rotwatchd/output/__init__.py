"""The one place that writes files: atomic primitives and the corrected-copy writer."""
