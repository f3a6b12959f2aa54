"""Each photo is read and decoded once: the check, the model input and the writer share it.

A JPEG decided by its EXIF tag is never decoded by Python at all (jpegtran's pass is its
check), so a ``fix`` run over tagged photos never builds a classifier nor imports the model
package; damaged data is still refused, by whichever step decodes it.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_photo
from helpers.paths import REPO_ROOT
from helpers.writer_images import camera_jpeg, upright_array
from PIL import Image

from rotwatchd.config import LimitsConfig, ModelConfig, OutputConfig
from rotwatchd.config.schema import DEFAULT_IGNORE
from rotwatchd.fix.oneshot import assess, fix
from rotwatchd.formats.image import inspect, load_upright, model_input
from rotwatchd.formats.jpeg_markers import has_optimized_huffman, parse_jpeg
from rotwatchd.formats.sniff import ImageProblem
from rotwatchd.model.base import OrientationClassifier
from rotwatchd.output.lossless_jpeg import transform_lossless
from rotwatchd.output.writer import write_corrected
from rotwatchd.service.classifier_pool import ClassifierPool
from rotwatchd.service.processor import MODEL_INPUT_SIDE, examine

needs_jpegtran = pytest.mark.skipif(shutil.which("jpegtran") is None, reason="needs jpegtran")


def _no_model() -> OrientationClassifier:
    raise AssertionError("the model was loaded for an image decided by its tag")


def _damaged(path: Path, orientation: int) -> Path:
    """A tagged JPEG whose marker structure is whole but whose first component uses a
    quantisation table that is not defined: only decoding it can tell."""
    camera_jpeg(path, upright_array(320, 240), orientation)
    data = bytearray(path.read_bytes())
    sof = next(s for s in parse_jpeg(bytes(data)).header if s.marker == 0xC0)
    data[sof.start + 4 + 8] = 3  # payload: precision, height, width, count, then id/samp/Tq
    path.write_bytes(bytes(data))
    return path


def test_fix_over_tagged_photos_never_builds_a_classifier(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i, orientation in enumerate((3, 6, 8)):
        camera_jpeg(inbox / f"p{i}.jpg", upright_array(160, 112), orientation)
    pool = ClassifierPool(_no_model)
    summary = fix([inbox], tmp_path / "out", pool, model_cfg=ModelConfig(),
                  limits=LimitsConfig(), output=OutputConfig(), ignore_patterns=DEFAULT_IGNORE)
    assert (summary.written, summary.failed) == (3, 0)
    assert pool.loads == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.jpg", "p1.jpg", "p2.jpg"]


#: What ``fix`` over tagged JPEGs never imports (start-up is a large share of its CPU next to
#: jpegtran's): the model package and numpy, the daemon's journal (sqlite3), review and
#: settling, YAML (no config file given), tqdm (not a terminal), and what hashing or
#: ``secrets`` would pull in.
_NOT_ON_THE_EXIF_PATH = (
    "rotwatchd.model", "numpy", "pillow_heif", "sqlite3", "rotwatchd.service.journal",
    "rotwatchd.service.review", "rotwatchd.watch.settle", "rotwatchd.watch.workqueue", "yaml",
    "tqdm", "hashlib", "secrets", "random", "tempfile")


def test_fix_command_on_tagged_photos_does_not_import_the_model(tmp_path: Path) -> None:
    """The real command in a fresh interpreter: neither the model package nor numpy (its
    start-up cost), nor any other module only other paths need (_NOT_ON_THE_EXIF_PATH), is
    imported when every file is decided by its tag."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    camera_jpeg(inbox / "p.jpg", upright_array(160, 112), 6)
    probe = ("import sys; from rotwatchd.cli.main import main; "
             f"status = main(['fix', {str(inbox)!r}, '-o', {str(tmp_path / 'out')!r}]); "
             f"print(status, sorted(m for m in {_NOT_ON_THE_EXIF_PATH!r} "
             "if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, check=True, timeout=120)
    assert done.stdout.split("\n")[-2] == "0 []"
    assert (tmp_path / "out" / "p.jpg").is_file()


def test_model_input_reuses_the_bytes_inspect_read(tmp_path: Path) -> None:
    """The decode inspect() defers is the model input's, pixel for pixel what load_upright
    gives, and it verifies the file."""
    path = make_photo(tmp_path / "m.jpg", correction=90, size=(1200, 900))
    info = inspect(path, verify=False)
    assert info.jpeg is not None and not info.verified
    reused = model_input(path, info, MODEL_INPUT_SIDE)
    assert np.array_equal(np.asarray(reused), np.asarray(load_upright(path, MODEL_INPUT_SIDE)))


@needs_jpegtran
@pytest.mark.parametrize("orientation", [6, 3])
def test_damaged_tagged_jpeg_is_still_refused(tmp_path: Path, orientation: int) -> None:
    """Not decoded before the writer, a damaged tagged photo is caught by the writer's decode
    (fix: failed, nothing written) and by check's own verification."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    path = _damaged(inbox / "bad.jpg", orientation)
    pool = ClassifierPool(_no_model)
    summary = fix([inbox], tmp_path / "out", pool, model_cfg=ModelConfig(),
                  limits=LimitsConfig(), output=OutputConfig(), ignore_patterns=DEFAULT_IGNORE)
    assert summary.failed == 1 and not (tmp_path / "out" / "bad.jpg").exists()
    assert assess(path, pool, 0.5, LimitsConfig()).problem is not None
    examined = examine(path, pool, max_pixels=LimitsConfig().max_pixels, verify=False)
    assert examined.facts.problem is None and examined.info is not None  # not decoded yet
    with pytest.raises(ImageProblem):
        write_corrected(path, tmp_path / "o.jpg", orientation=orientation,
                        jpeg=examined.info.jpeg, verified=False)
    assert not (tmp_path / "o.jpg").exists()


def test_standard_and_optimised_huffman_tables_are_told_apart(tmp_path: Path) -> None:
    image = Image.fromarray(upright_array(64, 48))
    plain, optimised = io.BytesIO(), io.BytesIO()
    image.save(plain, "JPEG", quality=90)
    image.save(optimised, "JPEG", quality=90, optimize=True)
    assert not has_optimized_huffman(parse_jpeg(plain.getvalue()))
    assert has_optimized_huffman(parse_jpeg(optimised.getvalue()))


def _coding(data: bytes) -> tuple[list[bytes], bytes]:
    """Tables, frame and scans of a JPEG: what a lossless transform decides."""
    layout = parse_jpeg(data)
    tables = [data[s.start:s.end] for s in layout.header if s.marker in (0xDB, 0xC4, 0xC0)]
    return tables, data[layout.first_scan:layout.end]


@needs_jpegtran
@pytest.mark.parametrize("optimize", [False, True])
def test_lossless_output_is_jpegtrans_own(tmp_path: Path, optimize: bool) -> None:
    """Byte for byte the tables and scans of ``jpegtran -perfect``, with ``-optimize`` exactly
    when the source's own tables were optimised (standard tables stay standard)."""
    src = tmp_path / "s.jpg"
    Image.fromarray(upright_array(160, 112)).save(src, "JPEG", quality=90, optimize=optimize)
    out = write_corrected(src, tmp_path / "o.jpg", orientation=6)
    assert out.action == "lossless-jpeg"
    jpegtran = shutil.which("jpegtran")
    assert jpegtran is not None
    args = [jpegtran, "-copy", "none", "-perfect", *(["-optimize"] if optimize else []),
            "-rotate", "90", str(src)]
    oracle = subprocess.run(args, capture_output=True, check=True).stdout
    assert _coding(out.path.read_bytes()) == _coding(oracle)


_TUNED = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432"


@pytest.mark.parametrize(("given", "seen"), [
    (None, _TUNED),
    ("glibc.malloc.arena_max=2", f"glibc.malloc.arena_max=2:{_TUNED}"),
    ("glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=0:glibc.malloc.mmap_threshold=33554432"),
])
def test_jpegtran_gets_huge_pages_and_its_whole_output_comes_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str | None, seen: str) -> None:
    """jpegtran's environment asks glibc for huge pages (a tunable the user set is kept), and
    everything it writes, however long, comes back: a stand-in that echoes its input (3 MiB,
    far more than a pipe holds) and reports its GLIBC_TUNABLES as a warning, exit status 2."""
    source = tmp_path / "s.jpg"
    Image.fromarray(upright_array(160, 112)).save(source, "JPEG")
    data = source.read_bytes() + os.urandom(3 << 20)
    source.write_bytes(data)
    stand_in = tmp_path / "jpegtran"
    stand_in.write_text('#!/bin/sh\nprintf "tunables=%s" "$GLIBC_TUNABLES" >&2\ncat\nexit 2\n')
    stand_in.chmod(0o755)
    if given is None:
        monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    else:
        monkeypatch.setenv("GLIBC_TUNABLES", given)
    done = transform_lossless(source, 6, parse_jpeg(data).frame, str(stand_in))
    assert done.body == data
    assert done.warnings == f"tunables={seen}"


_FLAT = """
import gc, io, threading
import psutil
from PIL import Image
from rotwatchd.formats.heap import bound_heap
assert bound_heap()
buf = io.BytesIO()
Image.effect_noise((4000, 3000), 40).convert("RGB").save(buf, "JPEG", quality=90)
data = buf.getvalue()
def work():  # decode, turn, drop, in a worker thread: what a re-encode does with a 12 MP photo
    for _ in range(3):
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            turned = im.transpose(Image.Transpose.ROTATE_270)
        turned.close()
before = psutil.Process().memory_info().rss
for _ in range(2):
    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
gc.collect()
print((psutil.Process().memory_info().rss - before) / 2**20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_memory_of_a_decoded_photo_goes_back_to_the_system(tmp_path: Path) -> None:
    """With bound_heap() (the daemon calls it at start) the ~100 MiB a 12 MP decode and turn
    take in a worker thread are unmapped when freed; without it glibc kept ~60 MiB of them in
    the threads' heaps for good."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-c", _FLAT], capture_output=True, text=True,
                          env=env, check=True, timeout=120)
    assert float(done.stdout) < 16
